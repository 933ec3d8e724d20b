"""SessionWorkflow against a real dev server: turns, validation, closing, store and history."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from keel.formation import Formation
from keel.messages import Usage
from keel.session import SUMMARY_MEMO, SendMessageInput, SessionSummary
from keel.session_handle import SessionRejected
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.workflows.helpers import chat, start_session


async def test_a_turn_answers_and_stores_the_transcript(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        first = await chat(handle, "hello")
        second = await chat(handle, "again")

        assert first.status == "completed"
        assert first.message is not None and first.message.content == "echo: hello"
        assert second.message is not None and second.message.content == "echo: again"
        assert first.usage.completion_tokens > 0
        messages = await store.messages(handle.id)
        assert messages[1].usage == first.usage
        assert [(m.seq, m.role, m.content) for m in messages] == [
            (0, "user", "hello"),
            (1, "assistant", "echo: hello"),
            (2, "user", "again"),
            (3, "assistant", "echo: again"),
        ]
        state = await handle.state()
        assert state.turn_count == 2 and state.current_turn is None


@pytest.mark.parametrize(
    ("text", "options", "error_type"),
    [
        ("   ", {}, "InvalidMessage"),
        ("x" * 101, {"max_message_chars": 100}, "MessageTooLong"),
    ],
)
async def test_bad_messages_are_rejected_by_the_validator(
    client: Client,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    text: str,
    options: dict[str, int],
    error_type: str,
) -> None:
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation, **options)
        with pytest.raises(SessionRejected) as caught:
            await handle.send_message(SendMessageInput(text=text))
        assert caught.value.type == error_type
        # The session is unharmed and still answers.
        assert (await chat(handle, "fine")).status == "completed"


async def test_a_closed_session_refuses_messages_and_completes(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        await chat(handle, "hello")
        await handle.close()
        result = await handle.result()
        assert result.turn_count == 1
        with pytest.raises(RPCError) as caught:
            await handle.send_message(SendMessageInput(text="late"))
        assert caught.value.status == RPCStatusCode.NOT_FOUND


async def test_the_busy_policy_reject_refuses_a_second_message(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    scripted = _scripted(formation)
    async with running_workers(client, settings, scripted, store):
        handle = await start_session(client, settings, scripted, on_busy="reject")
        await handle.send_message(SendMessageInput(text="slow [[sleep 2]]"))
        with pytest.raises(SessionRejected) as caught:
            await handle.send_message(SendMessageInput(text="second"))
        assert caught.value.type == "SessionBusy"


async def test_a_message_to_an_idle_session_answers_with_its_turn_started(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    """So a stream of the turn sends `turn.started` without waiting for a poll."""
    scripted = _scripted(formation)
    async with running_workers(client, settings, scripted, store):
        handle = await start_session(client, settings, scripted)
        first = await handle.send_message(SendMessageInput(text="slow [[sleep 1]]"))
        queued = await handle.send_message(SendMessageInput(text="second"))

        assert first.started is not None
        assert first.started.offset == first.stream_offset
        assert first.started.event.type == "turn.started"
        assert first.started.event.turn_id == first.turn_id
        # Behind a running turn it starts later: nothing to carry.
        assert queued.started is None
        assert (await handle.wait_turn(queued.turn_id)).status == "completed"


async def test_completed_turns_leave_the_memo_alone_and_the_store_counts_their_tokens(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    """Each memo upsert costs the server CPU: only what the store cannot tell is mirrored."""
    scripted = _scripted(formation)
    async with running_workers(client, settings, scripted, store):
        handle = await start_session(client, settings, scripted)
        turns = [await chat(handle, text) for text in ("one", "two", "three")]
        failed = await chat(handle, "[[fail 400]]")
        after = await chat(handle, "four")

        mirrored = [
            SessionSummary.model_validate_json(
                event.workflow_properties_modified_event_attributes.upserted_memo.fields[
                    SUMMARY_MEMO
                ].data
            ).turn_count
            async for event in handle.workflow.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED
        ]
        summary = await (await handle.workflow.describe()).memo_value(
            SUMMARY_MEMO, type_hint=SessionSummary
        )
    assert failed.status == "failed" and after.status == "completed"
    # After the run's first turn and the failed one, not after the completed turns between
    # (the last turn upserts too when it was queued behind the failed one, as it can be).
    assert mirrored[:2] == [1, 4] and mirrored[2:] in ([], [5])
    assert summary.turn(failed.turn_id) is not None
    assert summary.usage_from_seq is not None
    since = await store.usage(handle.id, from_seq=summary.usage_from_seq)
    total = sum((t.usage for t in [*turns, failed, after]), Usage())
    assert summary.usage + since == total and total.completion_tokens > 0


def _scripted(formation: Formation) -> Formation:
    """The formation with the `scripted` model, which follows `[[sleep N]]`."""
    default = formation.models["default"].model_copy(update={"provider": "scripted"})
    return formation.model_copy(update={"models": {**formation.models, "default": default}})
