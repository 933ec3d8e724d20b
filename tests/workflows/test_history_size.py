"""History must not grow with the conversation: the transcript lives in the store."""

from __future__ import annotations

from itertools import pairwise

from temporalio.client import Client

from keel.formation import Formation
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session

TURNS = 60
MESSAGE = "x" * 2048


async def _history_bytes(handle: SessionHandle) -> int:
    history = await handle.workflow.fetch_history()
    return sum(event.ByteSize() for event in history.events)


async def test_history_added_per_turn_does_not_grow_with_the_conversation(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        sizes = [await _history_bytes(handle)]
        for turn in range(1, TURNS + 1):
            result = await chat(handle, f"{turn} {MESSAGE}")
            assert result.status == "completed"
            sizes.append(await _history_bytes(handle))

    added = [after - before for before, after in pairwise(sizes)]
    turn_5, turn_60 = added[4], added[59]
    assert turn_60 <= 1.5 * turn_5, f"turn 5 added {turn_5} bytes, turn 60 added {turn_60}"
    # The turn's own text (2 KB in, 2 KB out) dominates what a turn adds.
    assert turn_5 < 16 * 1024
    assert len(await store.messages(handle.id)) == 2 * TURNS
