"""Versioned workers: two builds of one Worker Deployment at once, as in a rolling upgrade."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import Client
from temporalio.service import RPCError

from keel.session_handle import SessionHandle
from keel.settings import Settings
from tests.procs import WORKER_READY, KeelProcess, worker_process, write_formation
from tests.workflows.helpers import chat, start_session

FORMATION = {"models": {"default": {"provider": "scripted"}}, "agents": [{"name": "assistant"}]}


@pytest.fixture
def processes() -> Iterator[list[KeelProcess]]:
    started: list[KeelProcess] = []
    yield started
    for process in started:
        process.stop()


async def _make_current(client: Client, deployment: str, build_id: str) -> None:
    """Route new sessions to `build_id`, once its worker has registered it."""
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace, deployment_name=deployment, build_id=build_id
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # the build's worker has not polled yet


async def _build_of(client: Client, session: SessionHandle) -> str:
    """The build the session's current run is on."""
    described = await client.get_workflow_handle(session.id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id


async def test_sessions_stay_on_their_build_and_new_ones_go_to_the_current(
    client: Client, settings: Settings, tmp_path: Path, processes: list[KeelProcess]
) -> None:
    path, formation = write_formation(tmp_path, FORMATION)
    deployment = f"keel-test-{uuid.uuid4().hex[:8]}"
    timeline: list[tuple[float, str]] = []
    began = time.monotonic()

    def mark(what: str) -> None:
        timeline.append((round(time.monotonic() - began, 1), what))

    async def build(build_id: str) -> KeelProcess:
        worker = worker_process(
            tmp_path, settings, path, "--deployment", deployment, "--build-id", build_id
        )
        processes.append(worker)
        await worker.start(ready=WORKER_READY)
        await _make_current(client, deployment, build_id)
        mark(f"build {build_id} polling and current")
        return worker

    await build("A")
    pinned = await start_session(client, settings, formation)
    moving = await start_session(
        client, settings, formation, upgrade_on_continue_as_new=True, continue_as_new_after_turns=2
    )
    assert (await chat(pinned, "on A")).status == "completed"
    assert (await chat(moving, "on A")).status == "completed"
    assert await _build_of(client, pinned) == await _build_of(client, moving) == "A"
    mark("two sessions took a turn on A")

    await build("B")
    fresh = await start_session(client, settings, formation)
    assert (await chat(fresh, "on B")).status == "completed"
    assert await _build_of(client, fresh) == "B"
    mark("a new session took a turn on B")

    # The old sessions' turns still run on A, which still runs.
    assert (await chat(pinned, "still A")).status == "completed"
    assert await _build_of(client, pinned) == "A"
    mark("the pinned session took a turn on A")
    # Its second turn ends the run: the session continues as new, on the current build.
    assert (await chat(moving, "then B")).status == "completed"
    assert (await chat(moving, "on B now")).status == "completed"
    assert await _build_of(client, moving) == "B"
    mark("the other continued as new onto B and took a turn there")

    description = "\n".join(f"{at:5.1f} s  {what}" for at, what in timeline)
    print(f"versioned workers:\n{description}")  # the note's timeline (pytest -s)


def test_a_worker_with_a_deployment_needs_a_build_id() -> None:
    with pytest.raises(ValueError, match="--deployment and --build-id"):
        Settings(worker_deployment="keel")
