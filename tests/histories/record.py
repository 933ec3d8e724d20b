"""Record a corpus of workflow histories for `tests/workflows/test_replay.py` to replay.

Run from the repository root on a clean checkout of the code to pin, with a
label naming that code (date, branch, commit)::

    python -m tests.histories.record --label 2026-12-02-main-2273a4c

It starts a throwaway Temporal dev server (with Keel's search attributes), and
for each formation below a real stack as `keel dev` runs one: `worker_host`'s
workers, the API served by uvicorn, an in-process token-delta bus and, where
the formation asks for it, embedded Qdrant. Every scenario of `_scenarios.py`
drives its own session through the API and checks the answers; then each
history is written to `tests/histories/<label>/<scenario>.json`, and the other
workflows a scenario involves to `<scenario>.<role>.json`.

A file is the JSON that the Temporal CLI and UI export, with one more key,
`workflowId`: replay needs the id (child workflow ids derive from it).

Folders are kept forever: CI replays every one with the current code, which
proves that sessions started on an older build still run after an upgrade. So
this never writes into an existing folder, and writes a new one only once every
scenario has passed. Commit the new folder and add it to `KEPT` in
`tests/workflows/test_replay.py`; see docs/changing-workflows.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api import create_app
from keel.deltas import InProcessDeltaBus
from keel.devserver import TUNING, temporal_binary
from keel.formation import Formation, formation_from_data
from keel.logging import configure_logging
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from keel.temporal import SEARCH_ATTRIBUTES
from tests.api.live import serve_app
from tests.histories import _scenarios as s
from worker import worker_host

HERE = Path(__file__).parent
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RESULT_TIMEOUT_S = 60.0

_BASE: dict[str, Any] = {
    "id": "replay",
    "models": {"default": {"provider": "scripted"}},
    "agents": [
        {"name": "assistant", "tools": ["add", "lookup", "slow"]},
        {
            "name": "triage",
            "role": "coordinator",
            "description": "Routes requests",
            "routes": ["billing"],
        },
        {"name": "billing", "description": "Answers billing questions"},
        {"name": "hub", "tools": ["ask_session", "publish"]},
        {"name": "listener"},
    ],
    "python_tools": ["tests.fakes.python_tools", "tests.fakes.tools"],
    "approvals": {"tools": {"lookup": "always"}},
}


def _formation(**changes: Any) -> Formation:
    return formation_from_data({**_BASE, **changes}, env={})


STACKS: dict[str, tuple[Formation, Sequence[s.Scenario]]] = {
    "main": (
        _formation(),
        [
            s.sync_chat,
            s.streamed_turn,
            s.tool_turn,
            s.approval_approve,
            s.approval_reject,
            s.approval_revise,
            s.approval_signal,
            s.delegation,
            s.ask_session,
            s.publish,
            s.failed_turn,
            s.close,
            s.cancelled_turn,
        ],
    ),
    # Settings the workflow takes from its input, so each needs its own formation.
    "timeout": (
        _formation(approvals={**_BASE["approvals"], "timeout_s": 1}),
        [s.approval_timeout],
    ),
    "memory": (
        _formation(memory={"buffer_messages": 4, "vector": {"enabled": True}}),
        [s.memory],
    ),
    "continue_as_new": (
        _formation(sessions={"continue_as_new_after_turns": 2}),
        [s.continue_as_new],
    ),
    "rollback": (_formation(sessions={"on_busy": "rollback"}), [s.interrupted_turn]),
    "fallback": (
        _formation(
            models={
                "default": {"provider": "scripted", "max_attempts": 2, "fallbacks": ["spare"]},
                "spare": {"provider": "echo"},
            }
        ),
        [s.fallback_turn],
    ),
    "planner": (
        _formation(
            agents=[
                *_BASE["agents"],
                {"name": "planner", "role": "planner", "routes": ["billing", "listener"]},
            ],
            approvals={**_BASE["approvals"], "plans": {"min_steps": 2}},
        ),
        [s.planner],
    ),
}


@contextlib.asynccontextmanager
async def _stack(
    client: Client, name: str, formation: Formation, data: Path
) -> AsyncIterator[s.Live]:
    """Workers and the API of one formation, on task queues of their own."""
    settings = Settings(
        data_dir=data / name,
        temporal_address=client.service_client.config.target_host,
        sessions_task_queue=f"replay-{name}-sessions",
        activities_task_queue=f"replay-{name}-activities",
        max_sessions_per_user=0,
    )
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        store = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
        stack.push_async_callback(store.close)
        vector_memory = None
        if formation.memory.vector.enabled:
            vector_memory = VectorMemory.open(
                formation.memory.vector, data_dir=settings.resolved_data_dir
            )
            stack.push_async_callback(vector_memory.close)
        deltas = InProcessDeltaBus()
        stack.push_async_callback(deltas.close)
        workers = await stack.enter_async_context(
            worker_host(
                client,
                settings=settings,
                formation=formation,
                store=store,
                vector_memory=vector_memory,
                deltas=deltas,
            )
        )
        for worker in workers:
            await stack.enter_async_context(worker)
        app = create_app(
            settings,
            formation,
            client=client,
            store=store,
            vector_memory=vector_memory,
            deltas=deltas,
        )
        url = await stack.enter_async_context(serve_app(app))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60))
        yield s.Live(http=http, client=client)


async def _history(client: Client, run: s.Run) -> dict[str, Any]:
    """The run's history once it has closed, as a file of the corpus holds it."""
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    await asyncio.wait_for(handle.result(), RESULT_TIMEOUT_S)
    history = await handle.fetch_history()
    return {"workflowId": run.workflow_id, **history.to_json_dict()}


async def record(label: str) -> dict[str, dict[str, Any]]:
    """Drive every scenario; the histories by file name, printing each with its event count."""
    corpus: dict[str, dict[str, Any]] = {}
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(TUNING),
    )
    try:
        with tempfile.TemporaryDirectory() as data:
            for name, (formation, scenarios) in STACKS.items():
                async with _stack(env.client, name, formation, Path(data)) as live:
                    for scenario in scenarios:
                        for role, run in (await scenario(live)).items():
                            file = f"{scenario.__name__}{f'.{role}' if role else ''}.json"
                            corpus[file] = await _history(env.client, run)
                            count = len(corpus[file]["events"])
                            sys.stdout.write(f"{label}/{file}: {count} events\n")
    finally:
        await env.shutdown()
    return corpus


def _save(corpus: dict[str, dict[str, Any]], out: Path) -> None:
    # Only a complete corpus is kept: a failed scenario leaves no folder behind.
    out.mkdir()
    for file, history in corpus.items():
        (out / file).write_text(json.dumps(history, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.histories.record --label NAME`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--label", required=True, help="the folder to create, e.g. 2026-12-02-main-2273a4c"
    )
    args = parser.parse_args(argv)
    if not LABEL.match(args.label):
        parser.error(f"--label {args.label!r}: letters, digits, '.', '_' and '-' only")
    out = HERE / args.label
    if out.exists():
        parser.error(f"{out} exists; recorded corpora are kept as they are, pick a new label")
    configure_logging(level="warning")
    _save(asyncio.run(record(args.label)), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
