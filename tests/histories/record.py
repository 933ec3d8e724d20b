"""Record the workflow histories that `tests/workflows/test_replay.py` replays.

Run from the repository root, after a change that is *meant* to alter what
`SessionWorkflow` does (and only then: the point of the committed files is that
today's code must replay yesterday's histories)::

    python -m tests.histories.record

It starts a throwaway dev server, drives one session per scenario with the
offline `scripted` model, closes it, and writes `tests/histories/<scenario>.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from keel.approvals import Approval, ApprovalDecisionInput
from keel.devserver import TUNING, temporal_binary
from keel.formation import formation_from_data
from keel.session import CloseSessionInput, SessionState
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.workflows.helpers import chat, send, start_session, wait_for_turn
from worker import build_workers

HERE = Path(__file__).parent
FORMATION = formation_from_data(
    {
        "models": {"default": {"provider": "scripted"}},
        "agents": [{"name": "assistant", "tools": ["lookup", "search"]}],
        "approvals": {"tools": {"lookup": "always"}},
    },
    env={},
)
Handle = WorkflowHandle[Any, Any]


async def plain_turn(handle: Handle) -> None:
    """One question, one answer."""
    await chat(handle, "hello")


async def tool_turn(handle: Handle) -> None:
    """The model calls a tool (none is loaded: its activity answers with an error result)."""
    await chat(handle, '[[call search {"q": "keel"}]]')


async def approval_turn(handle: Handle) -> None:
    """A gated tool call, approved by update."""
    turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')
    state = await handle.query("state", result_type=SessionState)
    while not state.pending_approvals:
        await asyncio.sleep(0.05)
        state = await handle.query("state", result_type=SessionState)
    decision = ApprovalDecisionInput(approval_id=state.pending_approvals[0].id, decision="approve")
    await handle.execute_update("respond_to_approval", decision, result_type=Approval)
    await wait_for_turn(handle, turn_id)


async def continue_as_new(handle: Handle) -> None:
    """Two turns, then the run continues as new (recorded: the first run)."""
    await chat(handle, "one")
    await chat(handle, "two")


SCENARIOS: dict[str, tuple[Callable[[Handle], Awaitable[None]], dict[str, Any]]] = {
    "plain_turn": (plain_turn, {}),
    "tool_turn": (tool_turn, {}),
    "approval_turn": (approval_turn, {}),
    "continue_as_new": (continue_as_new, {"continue_as_new_after_turns": 2}),
}


async def record(out: Path) -> None:
    """Drive every scenario and write its history to `out/<scenario>.json`."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=list(TUNING),
    )
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data))
        store = SqliteTranscriptStore(Path(data) / "keel.db")
        try:
            async with contextlib.AsyncExitStack() as stack:
                for worker in build_workers(
                    env.client, settings=settings, formation=FORMATION, store=store
                ):
                    await stack.enter_async_context(worker)
                for name, (drive, options) in SCENARIOS.items():
                    handle = await start_session(env.client, settings, FORMATION, **options)
                    await drive(handle)
                    if "continue_as_new_after_turns" not in options:
                        await handle.execute_update("close", CloseSessionInput())
                        await handle.result()
                    first_run = env.client.get_workflow_handle(
                        handle.id, run_id=handle.first_execution_run_id
                    )
                    history = await first_run.fetch_history()
                    (out / f"{name}.json").write_text(history.to_json() + "\n")
                    sys.stdout.write(f"{name}: {len(history.events)} events\n")
        finally:
            await store.close()
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record(HERE))
