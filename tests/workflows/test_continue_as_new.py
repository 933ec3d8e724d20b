"""Continue-as-new: long sessions move to fresh runs between turns and lose nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from keel.devserver import TUNING, temporal_binary
from keel.formation import Formation, formation_from_data
from keel.messages import Usage
from keel.names import Activities, Updates
from keel.session import TurnResult, WaitTurnInput
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.runs import activities, session_runs
from tests.workflows.helpers import chat, send, start_session, wait_for_turn

TURNS = 300
EVERY = 25
EVENTS_PER_TURN = 3
"""turn.started, message.completed, turn.completed."""


@pytest.fixture
def scripted() -> Formation:
    return formation_from_data(
        {"models": {"default": {"provider": "scripted"}}, "agents": [{"name": "assistant"}]},
        env={},
    )


async def _turns_queued_across_a_boundary(handle: SessionHandle, turn: int) -> list[TurnResult]:
    """Turn `turn` (the run's last) is slow; turn `turn + 1` is sent meanwhile and waits.

    The run must continue as new before the queued turn starts, and hand it on.
    """
    last = await send(handle, f"{turn} [[sleep 1]]")
    queued = await send(handle, f"{turn + 1}")
    early = await handle.workflow.execute_update(
        Updates.WAIT_TURN, WaitTurnInput(turn_id=queued), result_type=TurnResult
    )
    assert early.status == "queued", "the old run answers wait_turn unfinished as it hands over"
    return [await wait_for_turn(handle, last), await wait_for_turn(handle, queued)]


async def test_300_turns_across_continue_as_new_keep_state_offsets_and_transcript(
    client: Client, settings: Settings, scripted: Formation, store: TranscriptStore
) -> None:
    usage = Usage()
    offsets: dict[int, int] = {}
    async with running_workers(client, settings, scripted, store):
        handle = await start_session(client, settings, scripted, continue_as_new_after_turns=EVERY)
        turn = 1
        while turn <= TURNS:
            if turn == EVERY:
                results = await _turns_queued_across_a_boundary(handle, turn)
            else:
                results = [await chat(handle, str(turn))]
            for result in results:
                assert result.status == "completed", (turn, result)
                usage = usage + result.usage
            turn += len(results)
            state = await handle.state()
            offsets[turn - 1] = state.stream_offset
        runs = await session_runs(client, handle)

    assert state.turn_count == TURNS
    assert state.usage == usage and usage.completion_tokens > 0
    # Offsets never restart: a subscriber resumes across runs from where it was.
    assert offsets == {n: EVENTS_PER_TURN * n for n in offsets}
    # Every run ends after exactly EVERY turns, even when a turn was waiting;
    # the latest run has just begun.
    assert [len(list(activities(run, Activities.CALL_MODEL))) for run in runs] == [EVERY] * 12 + [0]
    messages = await store.messages(handle.id, limit=10 * TURNS)
    assert [m.seq for m in messages] == list(range(2 * TURNS))
    for n in range(1, TURNS + 1):
        asked, answer = messages[2 * n - 2], messages[2 * n - 1]
        assert (asked.role, answer.role) == ("user", "assistant")
        assert asked.content.split()[0] == str(n) and answer.content == f"echo: {n}"
        assert asked.turn_id == answer.turn_id


@pytest.fixture(scope="module")
async def suggesting_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new once a run's history has 60 events."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        dev_server_extra_args=[
            *TUNING,
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=60",
        ],
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


async def test_a_session_continues_as_new_when_temporal_suggests_it(
    suggesting_env: WorkflowEnvironment, scripted: Formation, store: TranscriptStore
) -> None:
    client = suggesting_env.client
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        sessions_task_queue=f"sessions-{suffix}", activities_task_queue=f"activities-{suffix}"
    )
    async with running_workers(client, settings, scripted, store):
        # The configured turn count is far away: only the server's suggestion applies.
        handle = await start_session(client, settings, scripted)
        for turn in range(1, 13):
            assert (await chat(handle, str(turn))).status == "completed"
        state = await handle.state()
        runs = await session_runs(client, handle)

    assert state.turn_count == 12
    assert len(runs) >= 3
    assert all(len(run.events) < 120 for run in runs)
    assert [m.seq for m in await store.messages(handle.id)] == list(range(24))


async def test_the_hand_over_stays_small_when_the_run_held_long_answers(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant"}],
            "sessions": {"continue_as_new_after_turns": 4, "max_message_chars": 300_000},
        },
        env={},
    )
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        # Four answers of 300 kB: carried whole, with their events, they would pass
        # Temporal's 2 MB limit on the next run's input.
        for n in range(4):
            await chat(handle, f"{n}" * 300_000)
        after = await chat(handle, "and then?")
        first, second = await session_runs(client, handle)
    handed_over = first.events[-1].workflow_execution_continued_as_new_event_attributes
    assert handed_over.input.ByteSize() < 500_000
    assert after.message is not None and after.message.content == "echo: and then?"
    assert second.events[0].workflow_execution_started_event_attributes.input.ByteSize() < 500_000
