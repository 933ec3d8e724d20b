"""SIGKILL a worker mid-turn: a new worker finishes every turn, each exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from keel.approvals import ApprovalDecisionInput
from keel.names import Activities
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.procs import WORKER_READY, KeelProcess, worker_process, write_formation
from tests.runs import activities, session_runs, wait_for_pending
from tests.workflows.helpers import (
    chat,
    pending_approval,
    send,
    start_session,
    wait_for_turn,
)

SCRIPTED = {"models": {"default": {"provider": "scripted"}}}


@pytest.fixture
def processes() -> Iterator[list[KeelProcess]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[KeelProcess] = []
    yield started
    for process in started:
        process.stop()


async def _start(processes: list[KeelProcess], process: KeelProcess) -> KeelProcess:
    processes.append(process)
    return await process.start(ready=WORKER_READY)


async def _roles_and_contents(
    store: TranscriptStore, handle: SessionHandle
) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in await store.messages(handle.id)]


async def test_a_worker_killed_during_a_slow_llm_call(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
    processes: list[KeelProcess],
) -> None:
    path, formation = write_formation(tmp_path, {**SCRIPTED, "agents": [{"name": "assistant"}]})
    first = await _start(processes, worker_process(tmp_path, settings, path))
    handle = await start_session(client, settings, formation)
    assert (await chat(handle, "before")).status == "completed"
    turn_id = await send(handle, "slow [[sleep 3]]")
    await wait_for_pending(handle, Activities.CALL_MODEL)
    first.kill()
    second = await _start(processes, worker_process(tmp_path, settings, path))
    # The call is retried once its heartbeat times out (~15 s), not at its 150 s timeout.
    result = await wait_for_turn(handle, turn_id)
    assert (await chat(handle, "after")).status == "completed"
    [run] = await session_runs(client, handle)

    assert result.status == "completed" and result.message is not None
    assert result.message.content == "echo: slow"
    calls = list(activities(run, Activities.CALL_MODEL))
    assert [(c.outcome, c.attempt) for c in calls] == [
        ("completed", 1),
        ("completed", 2),
        ("completed", 1),
    ]
    assert calls[1].identity.startswith(f"{second.pid}@")
    assert await _roles_and_contents(store, handle) == [
        ("user", "before"),
        ("assistant", "echo: before"),
        ("user", "slow [[sleep 3]]"),
        ("assistant", "echo: slow"),
        ("user", "after"),
        ("assistant", "echo: after"),
    ]


async def test_a_worker_killed_during_a_tool_call(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
    processes: list[KeelProcess],
) -> None:
    path, formation = write_formation(
        tmp_path,
        {
            **SCRIPTED,
            "agents": [{"name": "assistant", "tools": ["slow"]}],
            "python_tools": ["tests.fakes.tools"],
        },
    )
    attempts = tmp_path / "tool-attempts.txt"

    def slow_tool_worker() -> KeelProcess:
        worker = worker_process(tmp_path, settings, path)
        worker.env["KEEL_TEST_TOOL_LOG"] = str(attempts)
        return worker

    await _start(processes, slow_tool_worker())
    handle = await start_session(client, settings, formation)
    turn_id = await send(handle, '[[call slow {"seconds": 3}]]')
    await wait_for_pending(handle, Activities.CALL_TOOL)
    processes[0].kill()
    await _start(processes, slow_tool_worker())
    result = await wait_for_turn(handle, turn_id)
    [run] = await session_runs(client, handle)

    assert result.status == "completed" and result.message is not None
    assert result.message.content == "tool results: slow -> slow done"
    [tool] = activities(run, Activities.CALL_TOOL)
    assert (tool.outcome, tool.attempt) == ("completed", 2)
    # Both attempts got the same idempotency key, so a tool that writes can deduplicate.
    keys = attempts.read_text().splitlines()
    assert len(keys) == 2 and keys[0] == keys[1]
    assert [role for role, _ in await _roles_and_contents(store, handle)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


async def test_a_worker_killed_while_a_session_waits_for_approval(
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
    processes: list[KeelProcess],
) -> None:
    path, formation = write_formation(
        tmp_path,
        {
            **SCRIPTED,
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
        },
    )
    first = await _start(processes, worker_process(tmp_path, settings, path))
    handle = await start_session(client, settings, formation)
    turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')
    approval = await pending_approval(handle)
    first.kill()
    await _start(processes, worker_process(tmp_path, settings, path))
    # The approval the killed worker opened is still there, under the same id.
    decided = await handle.respond_to_approval(
        ApprovalDecisionInput(approval_id=approval.id, decision="approve")
    )
    result = await wait_for_turn(handle, turn_id)
    state = await handle.state()
    [run] = await session_runs(client, handle)

    assert decided.status == "approved"
    assert result.status == "completed" and result.message is not None
    assert result.message.content == "tool results: lookup -> invoice 7: 40 EUR"
    assert state.pending_approvals == [] and state.turn_count == 1
    assert [t.outcome for t in activities(run, Activities.CALL_TOOL)] == ["completed"]
    assert [role for role, _ in await _roles_and_contents(store, handle)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
