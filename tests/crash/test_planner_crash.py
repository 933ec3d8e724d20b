"""SIGKILL a worker between the steps of a plan: a new worker finishes it, each step once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from keel.names import Activities
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.procs import WORKER_READY, KeelProcess, worker_process, write_formation
from tests.runs import activities, session_runs, wait_for_pending
from tests.workflows.helpers import send, start_session, wait_for_turn
from tests.workflows.test_planner import plan_message

FORMATION = {
    "models": {"default": {"provider": "scripted"}},
    "agents": [
        {"name": "lead", "role": "planner"},
        {"name": "research"},
        {"name": "writer"},
    ],
}


@pytest.fixture
def processes() -> Iterator[list[KeelProcess]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[KeelProcess] = []
    yield started
    for process in started:
        process.stop()


async def _step_running(handle: SessionHandle, step_id: str) -> str:
    """The child workflow id of `step_id`, once it runs while the steps before it are done."""
    for _ in range(300):
        for plan in (await handle.state()).plans:
            step = plan.step(step_id)
            if step.status == "running" and step.child_workflow_id:
                return step.child_workflow_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"step {step_id} never ran")


async def test_a_worker_killed_between_steps_finishes_the_plan_without_rerunning_a_step(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
    processes: list[KeelProcess],
) -> None:
    path, formation = write_formation(tmp_path, FORMATION)
    first = await worker_process(tmp_path, settings, path).start(ready=WORKER_READY)
    processes.append(first)
    handle = await start_session(client, settings, formation, agent="lead")
    message = plan_message(
        {"id": "a", "description": "find A [[say A is 1]]", "agent": "research"},
        {
            "id": "b",
            "description": "write it up [[sleep 3]] [[say done]]",
            "agent": "writer",
            "depends_on": ["a"],
        },
    )
    turn_id = await send(handle, message)
    b_child = SessionHandle(client, await _step_running(handle, "b"))
    await wait_for_pending(b_child, Activities.CALL_MODEL)
    first.kill()
    second = await worker_process(tmp_path, settings, path).start(ready=WORKER_READY)
    processes.append(second)
    result = await wait_for_turn(handle, turn_id)
    state = await handle.state()
    [run] = await session_runs(client, handle)

    assert result.status == "completed" and result.message is not None
    assert "Step a (research): A is 1" in result.message.content
    assert "Step b (writer): done" in result.message.content
    [plan] = state.plans
    assert plan.status == "completed"
    a_id, b_id = (plan.step("a").child_workflow_id, plan.step("b").child_workflow_id)
    assert a_id is not None and b_id is not None
    # Each step's child started once: the replay re-attached to them.
    started = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in run.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert started == [a_id, b_id]
    [a_run] = await session_runs(client, SessionHandle(client, a_id))
    assert [c.outcome for c in activities(a_run, Activities.CALL_MODEL)] == ["completed"]
    [b_run] = await session_runs(client, SessionHandle(client, b_id))
    b_calls = list(activities(b_run, Activities.CALL_MODEL))
    assert [(c.outcome, c.attempt) for c in b_calls] == [("completed", 2)]
    assert b_calls[0].identity.startswith(f"{second.pid}@")
    planner_calls = list(activities(run, Activities.CALL_MODEL))
    assert [c.outcome for c in planner_calls] == ["completed", "completed"]
    assert [m.role for m in await store.messages(handle.id)] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
