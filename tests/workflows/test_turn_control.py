"""Turn control: a turn cancelled mid model call, mid tool call (Python and MCP), at its
approval and in the queue; `on_busy: interrupt | rollback`; and the session after.

One worker stack for the module (real dev server, the probe MCP server as a process);
each test starts its own sessions. The cancel latencies print with `pytest -s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.testing import WorkflowEnvironment

from keel.approvals import ApprovalDecisionInput
from keel.events import EVENTS_TOPIC, TURN_END_TYPES, SessionEvent
from keel.formation import Formation, formation_from_data
from keel.messages import Message
from keel.names import Activities, Rejections
from keel.session import CancelTurnInput
from keel.session_handle import SessionHandle, SessionRejected
from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer
from tests.mcp_servers import PROBE
from tests.runs import activities, canceled_at, session_runs, wait_for_pending
from tests.workflows.helpers import chat, pending_approval, send, start_session, wait_for_turn

SLEEP_S = 30
SLOW_MODEL = f"think it over [[sleep {SLEEP_S}]]"
STOPS_WITHIN_S = 5.0
"""A cancelled call stops at its next heartbeat (every second): far sooner than this."""
FAKE_KEY = "sk-test-turn-control-0123456789"


@dataclass
class Stack:
    client: Client
    settings: Settings
    formation: Formation
    store: SqliteTranscriptStore
    data: Path

    async def session(
        self, formation: Formation | None = None, *, agent: str = "assistant", **options: Any
    ) -> SessionHandle:
        return await start_session(
            self.client, self.settings, formation or self.formation, agent=agent, **options
        )

    def log(self) -> Path:
        """A fresh file for a `dawdle` tool to note its start and end in."""
        return self.data / f"dawdle-{uuid.uuid4().hex[:8]}.log"


def _formation(**model: Any) -> Formation:
    return formation_from_data(
        {
            "models": {"default": model or {"provider": "scripted"}},
            "agents": [
                {"name": "assistant", "tools": ["dawdle", "lookup", "probe.dawdle"]},
                {"name": "triage", "role": "coordinator", "routes": ["billing"]},
                {"name": "billing", "description": "Answers billing questions"},
            ],
            "python_tools": ["tests.fakes.tools"],
            "mcp_servers": [PROBE.model_dump(exclude_defaults=True)],
            "approvals": {"tools": {"lookup": "always"}},
        },
        env={},
    )


@pytest.fixture(scope="module")
async def stack(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    data = tmp_path_factory.mktemp("turn-control")
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=data,
        temporal_address=temporal_env.client.service_client.config.target_host,
        sessions_task_queue=f"control-sessions-{suffix}",
        activities_task_queue=f"control-activities-{suffix}",
        max_sessions_per_user=0,
    )
    store = SqliteTranscriptStore(data / "keel.db")
    formation = _formation()
    os.environ["TURN_CONTROL_FAKE_KEY"] = FAKE_KEY  # read by the workers' provider clients
    try:
        async with running_workers(temporal_env.client, settings, formation, store):
            yield Stack(temporal_env.client, settings, formation, store, data)
    finally:
        await store.close()
        os.environ.pop("TURN_CONTROL_FAKE_KEY", None)


async def _turn_events(client: Client, handle: SessionHandle, turn_id: str) -> list[str]:
    """The types of a turn's events, up to its last."""
    stream = WorkflowStreamClient.create(client, handle.id)
    types: list[str] = []
    async with asyncio.timeout(30):
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            event: SessionEvent = item.data
            if event.turn_id == turn_id:
                types.append(event.type)
                if event.type in TURN_END_TYPES:
                    return types
    raise AssertionError(f"turn {turn_id} never ended: {types}")


async def _events_of(client: Client, handle: SessionHandle, turn_id: str) -> list[SessionEvent]:
    stream = WorkflowStreamClient.create(client, handle.id)
    events: list[SessionEvent] = []
    async with asyncio.timeout(30):
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            if item.data.turn_id == turn_id:
                events.append(item.data)
                if item.data.type in TURN_END_TYPES:
                    return events
    raise AssertionError("unreachable")


async def _noted(log: Path, what: str) -> float:
    """When the `dawdle` tool noted `what` (waits for it, up to 30 s)."""
    for _ in range(600):
        if (at := _note(log, what)) is not None:
            return at
        await asyncio.sleep(0.05)
    raise AssertionError(f"the tool never noted {what!r}")


def _note(log: Path, what: str) -> float | None:
    lines = log.read_text().splitlines() if log.exists() else []
    return next((float(at) for name, at in (line.split() for line in lines) if name == what), None)


def _transcript(messages: list[Message]) -> list[tuple[str, str]]:
    assert [m.seq for m in messages] == list(range(len(messages))), "no gap, no overlap"
    return [(m.role, m.content) for m in messages]


async def _cancel(handle: SessionHandle, turn_id: str, **options: Any) -> float:
    """Cancel the turn; when the cancel was asked for, in epoch seconds."""
    asked = time.time()
    result = await handle.cancel_turn(CancelTurnInput(turn_id=turn_id, **options))
    assert result.turn_id == turn_id
    return asked


async def test_a_cancel_stops_the_model_call_and_the_session_goes_on(stack: Stack) -> None:
    handle = await stack.session()
    turn_id = await send(handle, SLOW_MODEL)
    await wait_for_pending(handle, Activities.CALL_MODEL)
    await asyncio.sleep(1.5)  # mid-call, between two heartbeats
    asked = await _cancel(handle, turn_id)
    ended = await wait_for_turn(handle, turn_id)
    ended_after = time.time() - asked

    assert ended.status == "cancelled" and ended.message is None
    history = await handle.workflow.fetch_history()
    [model_call] = activities(history, Activities.CALL_MODEL)
    assert model_call.outcome == "canceled"  # the activity saw the cancel and stopped
    stopped_after = canceled_at(history, Activities.CALL_MODEL) - asked
    print(f"\ncancel -> model call stopped: {stopped_after:.2f} s; turn ended: {ended_after:.2f} s")
    assert stopped_after < STOPS_WITHIN_S and ended_after < STOPS_WITHIN_S
    assert await _turn_events(stack.client, handle, turn_id) == ["turn.started", "turn.cancelled"]

    again = await chat(handle, "and now?")
    assert again.status == "completed" and again.message is not None
    assert again.message.content == "echo: and now?"
    # Kept, not rolled back (the formation's `on_busy` is `enqueue`).
    assert _transcript(await stack.store.messages(handle.id)) == [
        ("user", SLOW_MODEL),
        ("user", "and now?"),
        ("assistant", "echo: and now?"),
    ]


@pytest.mark.parametrize("tool", ["dawdle", "probe.dawdle"])
async def test_a_cancel_stops_a_running_tool(stack: Stack, tool: str) -> None:
    """A Python tool in the worker, and one on an MCP server process (told to stop)."""
    handle = await stack.session()
    log = stack.log()
    call = f'[[call {tool} {{"seconds": {SLEEP_S}, "log": "{log}"}}]]'
    turn_id = await send(handle, call)
    await _noted(log, "started")
    asked = await _cancel(handle, turn_id)
    ended = await wait_for_turn(handle, turn_id)
    tool_stopped = await _noted(log, "cancelled") - asked

    assert ended.status == "cancelled"
    history = await handle.workflow.fetch_history()
    [tool_call] = activities(history, Activities.CALL_TOOL)
    assert tool_call.outcome == "canceled"
    print(f"\ncancel -> {tool} stopped: {tool_stopped:.2f} s")
    assert tool_stopped < STOPS_WITHIN_S
    assert _note(log, "done") is None
    # No `tool.result`: the call has no result but the one the transcript gives it.
    assert await _turn_events(stack.client, handle, turn_id) == [
        "turn.started",
        "tool.call",
        "turn.cancelled",
    ]
    again = await chat(handle, "next")
    assert again.status == "completed"
    messages = await stack.store.messages(handle.id)
    assert [(m.role, m.is_error) for m in messages] == [
        ("user", False),
        ("assistant", False),
        ("tool", True),
        ("user", False),
        ("assistant", False),
    ]
    assert messages[2].content == "not finished: the turn was cancelled"
    assert messages[2].tool_call_id == messages[1].tool_calls[0].id


async def test_a_cancel_stops_a_delegated_specialist(stack: Stack) -> None:
    handle = await stack.session(agent="triage")
    turn_id = await send(handle, f'[[call billing {{"message": "{SLOW_MODEL}"}}]]')
    [handoff] = await _handoffs(stack.client, handle, turn_id)
    child = SessionHandle(stack.client, handoff.data["child_workflow_id"])
    await wait_for_pending(child, Activities.CALL_MODEL)
    asked = await _cancel(handle, turn_id)
    assert (await wait_for_turn(handle, turn_id)).status == "cancelled"
    ended_after = time.time() - asked

    # The specialist's run was asked to cancel: its model call stopped and it closed.
    result = await asyncio.wait_for(child.result(), 10)
    assert result.last_turn is not None and result.last_turn.status == "failed"
    history = await child.workflow.fetch_history()
    assert [a.outcome for a in activities(history, Activities.CALL_MODEL)] == ["canceled"]
    print(f"\ncancel -> delegating turn ended: {ended_after:.2f} s")
    assert ended_after < STOPS_WITHIN_S


async def _handoffs(client: Client, handle: SessionHandle, turn_id: str) -> list[SessionEvent]:
    stream = WorkflowStreamClient.create(client, handle.id)
    async with asyncio.timeout(30):
        async for item in stream.subscribe(EVENTS_TOPIC, result_type=SessionEvent):
            if item.data.turn_id == turn_id and item.data.type == "handoff":
                return [item.data]
    raise AssertionError("unreachable")


async def test_a_cancel_closes_the_turns_approval_and_a_late_decision_is_refused(
    stack: Stack,
) -> None:
    handle = await stack.session()
    turn_id = await send(handle, '[[call lookup {"invoice": 7}]]')
    approval = await pending_approval(handle)
    await _cancel(handle, turn_id)
    assert (await wait_for_turn(handle, turn_id)).status == "cancelled"

    with pytest.raises(SessionRejected) as refused:
        await handle.respond_to_approval(
            ApprovalDecisionInput(approval_id=approval.id, decision="approve")
        )
    assert refused.value.type == Rejections.APPROVAL_DECIDED
    assert refused.value.message == f"approval {approval.id!r} was cancelled with its turn"
    assert refused.value.details["status"] == "cancelled"
    assert (await handle.state()).pending_approvals == []
    events = await _events_of(stack.client, handle, turn_id)
    assert [e.type for e in events] == [
        "turn.started",
        "tool.call",
        "approval.requested",
        "approval.decided",
        "turn.cancelled",
    ]
    decided = events[3].data
    assert (decided["decided_by"], decided["decision"]) == ("cancel", "reject")
    # The approval's timer went with it: nothing of the turn is left to fire.
    history = await handle.workflow.fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_TIMER_CANCELED in kinds
    assert "lookup" not in {a.name for a in activities(history)}


async def test_a_queued_turn_is_cancelled_at_once_and_never_runs(stack: Stack) -> None:
    handle = await stack.session()
    running = await send(handle, "first [[sleep 1]]")
    queued = await send(handle, "second")
    result = await handle.cancel_turn(CancelTurnInput(turn_id=queued))
    assert result.status == "cancelled"

    first = await wait_for_turn(handle, running)
    assert first.status == "completed"
    assert (await wait_for_turn(handle, queued)).status == "cancelled"
    assert await _turn_events(stack.client, handle, queued) == ["turn.cancelled"]
    assert [m.content for m in await stack.store.messages(handle.id)] == [
        "first [[sleep 1]]",
        "echo: first",
    ]


async def test_a_cancel_of_an_unknown_or_ended_turn_is_refused(stack: Stack) -> None:
    handle = await stack.session()
    done = await chat(handle, "hi")
    for turn_id, refusal in [("no-such-turn", Rejections.UNKNOWN_TURN), (done.turn_id, None)]:
        with pytest.raises(SessionRejected) as refused:
            await handle.cancel_turn(CancelTurnInput(turn_id=turn_id))
        assert refused.value.type == (refusal or Rejections.TURN_ENDED)
    assert "has already ended: completed" in refused.value.message


async def test_on_busy_interrupt_cancels_the_running_turn_and_runs_the_new_message(
    stack: Stack,
) -> None:
    handle = await stack.session(on_busy="interrupt")
    first = await send(handle, SLOW_MODEL)
    await wait_for_pending(handle, Activities.CALL_MODEL)
    second = await send(handle, "never mind")

    assert (await wait_for_turn(handle, first)).status == "cancelled"
    answer = await wait_for_turn(handle, second)
    assert answer.message is not None and answer.message.content == "echo: never mind"
    [cancelled] = [
        e for e in await _events_of(stack.client, handle, first) if e.type == "turn.cancelled"
    ]
    assert cancelled.data["reason"] == "interrupted"
    assert cancelled.data["interrupted_by"] == second
    assert cancelled.data["rolled_back"] is False
    assert [c for _, c in _transcript(await stack.store.messages(handle.id))] == [
        SLOW_MODEL,
        "never mind",
        "echo: never mind",
    ]


@pytest.fixture(scope="module")
async def fake_llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.mark.parametrize("on_busy", ["interrupt", "rollback"])
async def test_the_next_model_call_sees_what_the_interrupted_turn_left(
    stack: Stack, fake_llm: FakeLLMServer, on_busy: str
) -> None:
    """Through a vendor's wire format: rolled back, the next call has no trace of the turn;
    kept, its unfinished tool call has a result (the fake vendor refuses one without)."""
    fake_llm.reset()
    vendor = _formation(
        provider="openai",
        model="fake-model",
        base_url=fake_llm.openai_base_url,
        api_key_env="TURN_CONTROL_FAKE_KEY",
    )
    handle = await stack.session(vendor, on_busy=on_busy)
    log = stack.log()
    fake_llm.enqueue_reply(
        "", [{"name": "dawdle", "arguments": {"seconds": SLEEP_S, "log": str(log)}}]
    )
    first = await send(handle, "look into it")
    await _noted(log, "started")
    second = await send(handle, "forget it")

    assert (await wait_for_turn(handle, first)).status == "cancelled"
    answer = await wait_for_turn(handle, second)
    assert answer.message is not None and answer.message.content == "fake: forget it"
    await _noted(log, "cancelled")
    sent = fake_llm.requests[-1].body["messages"]
    seen = [(m["role"], m.get("content") or "") for m in sent if m["role"] != "system"]
    transcript = _transcript(await stack.store.messages(handle.id))
    if on_busy == "rollback":
        assert seen == [("user", "forget it")]
        assert transcript == [("user", "forget it"), ("assistant", "fake: forget it")]
    else:
        assert seen == [
            ("user", "look into it"),
            ("assistant", ""),
            ("tool", "Error: not finished: the turn was cancelled"),
            ("user", "forget it"),
        ]
        assert [role for role, _ in transcript] == [
            "user",
            "assistant",
            "tool",
            "user",
            "assistant",
        ]


async def test_a_session_continues_as_new_after_a_rolled_back_turn(stack: Stack) -> None:
    handle = await stack.session(on_busy="rollback", continue_as_new_after_turns=2)
    assert (await chat(handle, "one")).status == "completed"
    slow = await send(handle, SLOW_MODEL)
    await wait_for_pending(handle, Activities.CALL_MODEL)
    await _cancel(handle, slow)
    assert (await wait_for_turn(handle, slow)).status == "cancelled"
    third = await chat(handle, "three")  # in the next run: the cancelled turn counted

    assert third.message is not None and third.message.content == "echo: three"
    assert (await wait_for_turn(handle, slow)).status == "cancelled"  # carried over
    runs = await session_runs(stack.client, handle)
    assert len(runs) == 2
    assert _transcript(await stack.store.messages(handle.id)) == [
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "three"),
        ("assistant", "echo: three"),
    ]
    with contextlib.suppress(SessionRejected):
        await handle.close()
