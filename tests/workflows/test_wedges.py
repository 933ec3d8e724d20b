"""Inputs and timings that once wedged a session (its workflow task failing on every retry)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter

from keel.approvals import ApprovalDecisionInput
from keel.contracts.llm import CallModelInput
from keel.formation import Formation, formation_from_data
from keel.names import Activities, Rejections
from keel.session import SendMessageInput, TurnResult
from keel.session_handle import SessionHandle, SessionRejected
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.runs import activities, session_runs
from tests.workflows.helpers import chat, pending_approval, send, start_session, wait_for_turn
from worker import build_workers

RESENDS = 5


def _formation(**extra: Any) -> Formation:
    data: dict[str, Any] = {
        "models": {"default": {"provider": "scripted", "max_attempts": 1}},
        "agents": [{"name": "assistant", "tools": ["lookup", "publish", "ask_session"]}],
        "python_tools": ["tests.fakes.tools"],
    }
    return formation_from_data({**data, **extra}, env={})


def _model_inputs(history: WorkflowHistory) -> list[CallModelInput]:
    converter = pydantic_data_converter.payload_converter
    return [
        converter.from_payloads(
            event.activity_task_scheduled_event_attributes.input.payloads, [CallModelInput]
        )[0]
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name
        == Activities.CALL_MODEL
    ]


async def test_a_decision_and_its_timeout_in_one_workflow_task_let_the_decision_stand(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(approvals={"tools": {"lookup": "always"}, "timeout_s": 2})
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')
        approval = await pending_approval(handle)
    # No worker: the decision and the timer's firing wait in the same workflow task.
    await handle.signal_approval(ApprovalDecisionInput(approval_id=approval.id, decision="approve"))
    await asyncio.sleep(2.5)
    async with running_workers(client, settings, formation, store):
        result = await wait_for_turn(handle, turn_id)
    assert result.status == "completed" and result.message is not None
    assert result.message.content == "tool results: lookup -> invoice 7: 40 EUR"


async def test_bad_arguments_of_a_built_in_tool_are_a_tool_error_the_model_sees(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation()
    topic = "t" * 200
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        result = await chat(handle, f'[[call publish {{"topic": "{topic}", "message": "hi"}}]]')
        after = await chat(handle, "still here?")
    assert result.status == "completed" and result.message is not None
    assert result.message.content.startswith("tool results: publish -> invalid arguments")
    assert "128" in result.message.content
    assert after.message is not None and after.message.content == "echo: still here?"


async def test_sixty_sync_chats_queued_at_once_each_get_their_answer(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        await send(handle, "first [[sleep 1]]")
        # More turns than the workflow keeps results of: each is forgotten soon
        # after it ends, and its `chat` waiter must have its answer all the same.
        chats = [_chat_resending(handle, f"turn {n}", f"turn-{n}") for n in range(60)]
        results = await asyncio.gather(*chats)
        state = await handle.state()
    assert [r.status for r in results] == ["completed"] * 60
    assert [r.message.content if r.message else None for r in results] == [
        f"echo: turn {n}" for n in range(60)
    ]
    assert state.turn_count == 61


async def _chat_resending(handle: SessionHandle, text: str, turn_id: str) -> TurnResult:
    """A sync chat sent again, by the same update id, when its RPC gives up, as the API does.

    Sixty updates at once on a loaded machine: the server may abort some before a
    worker accepts them, and the client's retries of that can run out; a resend
    with the same id is the same turn (or its `DuplicateTurn`, then waited for).
    """
    message = SendMessageInput(text=text, turn_id=turn_id)
    for _ in range(RESENDS):
        try:
            return await handle.chat(message, update_id=turn_id)
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            continue
        except SessionRejected as err:
            if err.type != Rejections.DUPLICATE_TURN:
                raise
            return await handle.wait_turn(turn_id)
    raise AssertionError(f"{turn_id}: no answer after {RESENDS} sends")


async def test_a_failing_model_does_not_make_each_model_call_carry_more(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation()
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        failed = [await chat(handle, f"try {n} [[fail 503]]") for n in range(4)]
        answered = await chat(handle, "and now?")
        [run] = await session_runs(client, handle)
    assert [r.status for r in failed] == ["failed"] * 4
    assert answered.status == "completed"
    # Each call carries its own turn's message only: the failed turns' were stored.
    assert [len(call.new_messages) for call in _model_inputs(run)] == [1] * 5
    texts = [m.content for m in await store.messages(handle.id) if m.role == "user"]
    assert texts == [*(f"try {n} [[fail 503]]" for n in range(4)), "and now?"]


async def test_a_full_queue_refuses_messages_by_count_and_by_bytes(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(sessions={"max_queued_turns": 3, "max_message_chars": 600_000})
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        await send(handle, "slow [[sleep 1]]")
        queued = [await send(handle, f"queued {n}") for n in range(3)]
        assert await _refusal(handle, "one too many") == "SessionQueueFull"
        await wait_for_turn(handle, queued[-1])
        # By bytes: two messages of 600 kB would pass the 1 MiB the queue holds.
        await send(handle, "slow again [[sleep 1]]")
        await send(handle, "y" * 600_000)
        assert await _refusal(handle, "z" * 600_000) == "SessionQueueFull"


async def _refusal(handle: SessionHandle, text: str) -> str | None:
    try:
        await handle.send_message(SendMessageInput(text=text))
    except SessionRejected as err:
        return err.type
    return None


@contextlib.asynccontextmanager
async def _workers(
    client: Client,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    queues: list[str],
) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for worker in build_workers(
            client, settings=settings, formation=formation, store=store, task_queues=queues
        ):
            await stack.enter_async_context(worker)
        yield


async def test_a_close_accepted_while_continue_as_new_waits_closes_the_session(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    # Model calls on a queue of their own, so the tool queue can stay down while they run.
    model_queue = f"{settings.activities_task_queue}-llm"
    formation = _formation(
        models={"default": {"provider": "scripted", "task_queue": model_queue}},
        approvals={"tools": {"lookup": "always"}, "timeout_s": 2},
        sessions={"continue_as_new_after_turns": 1},
    )
    sessions, tools = settings.sessions_task_queue, settings.activities_task_queue
    async with _workers(client, settings, formation, store, [sessions, model_queue]):
        handle = await start_session(client, settings, formation)
        turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')
        approval = await pending_approval(handle)
        # A revision whose arguments a worker on the (down) tool queue must check:
        # the update stays in flight while the approval times out and the turn ends.
        revise = asyncio.create_task(
            handle.respond_to_approval(
                ApprovalDecisionInput(
                    approval_id=approval.id, decision="revise", arguments={"invoice": 8}
                )
            )
        )
        result = await wait_for_turn(handle, turn_id)
        # The run now waits for that update before continuing as new; a close comes in.
        closed = await handle.close()
        async with _workers(client, settings, formation, store, [tools]):
            with contextlib.suppress(Exception):
                await revise
            outcome = await asyncio.wait_for(handle.result(), 30)
    description = await handle.workflow.describe()
    assert result.status == "completed" and closed.status == "closed"
    assert outcome.turn_count == 1
    assert description.raw_description.workflow_execution_info.status == (
        WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED
    )


async def test_a_lost_store_is_reseeded_in_chunks_under_the_payload_limit(
    client: Client, settings: Settings, store: TranscriptStore
) -> None:
    formation = _formation(sessions={"max_message_chars": 120_000})
    async with running_workers(client, settings, formation, store):
        handle = await start_session(client, settings, formation)
        for n in range(5):  # 1.2 MB in this run: one activity input used to carry it all
            await chat(handle, f"{n}" * 120_000)
        await store.delete_sessions([handle.id])
        result = await chat(handle, "do you still know me?")
        runs = await session_runs(client, handle)
    assert result.status == "completed"
    seeds = [a for run in runs for a in activities(run, Activities.SEED_TRANSCRIPT)]
    assert len(seeds) >= 3 and all(s.outcome == "completed" for s in seeds)
    sizes = [
        e.activity_task_scheduled_event_attributes.input.ByteSize()
        for run in runs
        for e in run.events
        if e.activity_task_scheduled_event_attributes.activity_type.name
        == Activities.SEED_TRANSCRIPT
    ]
    assert len(runs) == 1 and max(sizes) < 300_000
    assert len(await store.messages(handle.id)) == 12
