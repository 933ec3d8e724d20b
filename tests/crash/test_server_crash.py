"""SIGKILL the Temporal dev server between turns, restart it on its SQLite file: nothing is lost."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.cli._serve import connect_with_retry
from keel.formation import Formation
from keel.names import Activities
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.procs import DevServerProcess
from tests.runs import activities
from tests.workflows.helpers import chat, start_session


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DevServerProcess]:
    own = DevServerProcess(tmp_path)
    own.start()
    yield own
    own.kill()


async def test_a_dev_server_killed_between_turns_restarts_with_every_session_intact(
    server: DevServerProcess, formation: Formation, store: TranscriptStore, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=tmp_path / "data",
        temporal_address=f"127.0.0.1:{server.port}",
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
    )
    client = await connect_with_retry(settings)
    # The worker keeps running through the outage and reconnects by itself.
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        assert (await chat(handle, "one")).status == "completed"
        assert (await chat(handle, "two")).status == "completed"
        server.kill()
        server.start()
        await connect_with_retry(settings)  # up again
        third = await chat(handle, "three")
        state = await handle.state()
        history = await handle.workflow.fetch_history()

    assert third.status == "completed" and third.message is not None
    assert third.message.content == "echo: three"
    assert state.turn_count == 3
    assert [m.content for m in await store.messages(handle.id)] == [
        "one",
        "echo: one",
        "two",
        "echo: two",
        "three",
        "echo: three",
    ]
    # The run's history from before the crash is all there: three calls, each run once.
    calls = [(c.outcome, c.attempt) for c in activities(history, Activities.CALL_MODEL)]
    assert calls == [("completed", 1)] * 3
