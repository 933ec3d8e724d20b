"""`AsyncKeel` against the API on a real port, with its workers: every call as a user makes it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from keel.client import (
    AsyncKeel,
    ChatAccepted,
    Conflict,
    Event,
    InvalidRequest,
    KeelConnectionError,
    NotFound,
    Unauthorized,
)
from keel.events import MessageCompleted, TurnStarted
from tests.keel.client.proxy import proxy_to
from tests.keel.client.stack import LOOKUP, SECRET

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def keel(url: str) -> AsyncIterator[AsyncKeel]:
    async with AsyncKeel(url, user_id="ann") as client:
        yield client


async def test_sessions_are_created_read_listed_and_closed(keel: AsyncKeel) -> None:
    session = await keel.sessions.create("assistant", metadata={"case": 1})
    assert (session.agent, session.user_id, session.status) == ("assistant", "ann", "active")
    assert session.workflow_id.endswith(session.id) and session.metadata == {"case": 1}
    await keel.chat("hello", session_id=session.id)
    detail = await keel.sessions.get(session.id)
    assert [(m.role, m.content) for m in detail.messages] == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
    ]
    page = await keel.sessions.list(status="active", limit=200)
    assert session.id in {s.id for s in page.sessions}
    closed = await keel.sessions.close(session.id)
    assert closed.status == "closed"
    assert (await keel.sessions.get(session.id)).status == "closed"


async def test_chat_answers_and_starts_a_session_when_none_is_named(keel: AsyncKeel) -> None:
    result = await keel.chat("hi")
    assert (result.status, result.message and result.message.content) == ("completed", "echo: hi")
    assert result.usage.completion_tokens > 0
    again = await keel.chat("and again", session_id=result.session_id)
    assert again.session_id == result.session_id and again.turn_id != result.turn_id
    turn = await keel.sessions.turn(result.session_id, result.turn_id)
    assert turn.message == result.message


async def test_stream_brings_token_deltas_then_the_whole_answer(keel: AsyncKeel) -> None:
    events = [e async for e in keel.stream("one two three")]
    assert events[0].type == "turn.started" and events[-1].type == "turn.completed"
    deltas = [e for e in events if e.type == "message.delta"]
    assert deltas and all(e.offset is None for e in deltas)
    assert "".join(e.data["text"] for e in deltas) == "echo: one two three"
    completed = next(e for e in events if e.type == "message.completed").payload()
    assert isinstance(completed, MessageCompleted) and completed.content == "echo: one two three"
    started = events[0].session_event()  # the API's own model of it
    assert isinstance(started.payload(), TurnStarted) and started.turn_id == events[0].turn_id
    offsets = [e.offset for e in events if e.offset is not None]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert {e.session_id for e in events} == {events[0].session_id}


async def test_events_resume_after_a_dropped_connection_without_a_duplicate(
    keel: AsyncKeel, url: str
) -> None:
    session = await keel.sessions.create()
    await keel.chat("first", session_id=session.id)
    seen: list[Event] = []
    second: str | None = None
    async with (
        proxy_to(url) as proxy,
        AsyncKeel(proxy.url) as through,
        through.events(session.id) as events,
    ):
        async for event in events:
            seen.append(event)
            if event.type == "turn.completed" and len(_ends(seen)) == 1:
                # The model takes a moment: the connection drops between its events.
                second = (await keel.send("[[sleep 0.3]] second", session_id=session.id)).turn_id
            elif event.type == "turn.started" and event.turn_id == second:
                proxy.cut()  # the rest of the turn comes over a new connection
            elif len(_ends(seen)) == 2:
                break
    durable = [e.offset for e in seen if e.offset is not None]
    assert durable == list(range(len(durable)))  # every offset once, in order
    assert [e.type for e in seen if e.offset is not None].count("message.completed") == 2
    assert len(proxy.requests) == 2
    resumed_after = durable[[e.type for e in seen if e.offset is not None].index("turn.started", 3)]
    assert f"last-event-id: {resumed_after}".encode() in proxy.requests[1].lower()


def _ends(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == "turn.completed"]


@pytest.mark.parametrize(
    ("decision", "options", "status", "answer"),
    [
        ("approve", {}, "approved", "invoice 7: 40 EUR"),
        ("reject", {"feedback": "not that one"}, "rejected", "not that one"),
        ("revise", {"arguments": {"invoice": 8}, "reviewer": "bo"}, "revised", "invoice 8: 40 EUR"),
    ],
)
async def test_approvals_are_listed_and_decided(
    keel: AsyncKeel, decision: str, options: dict[str, object], status: str, answer: str
) -> None:
    accepted = await keel.send(LOOKUP)
    async with keel.events(accepted.session_id, turn_id=accepted.turn_id) as events:
        async for event in events:
            if event.type == "approval.requested":
                break
    [pending] = await keel.approvals.list(accepted.session_id)
    assert (pending.tool, pending.arguments, pending.status) == (
        "lookup",
        {"invoice": 7},
        "pending",
    )
    decided = await keel.approvals.decide(
        accepted.session_id,
        pending.id,
        decision,
        **options,  # type: ignore[arg-type]
    )
    assert (decided.id, decided.status, decided.decision) == (pending.id, status, decision)
    assert decided.reviewer == options.get("reviewer", "ann")  # the caller, unless named
    rest = [e async for e in keel.events(accepted.session_id, turn_id=accepted.turn_id)]
    result = next(e for e in rest if e.type == "tool.result")
    assert answer in result.data["glimpse"]  # the model hears the feedback of a rejection
    assert rest[-1].type == "turn.completed"
    assert await keel.approvals.list(accepted.session_id) == []
    [past] = await keel.approvals.list(accepted.session_id, status="decided")
    assert (past.id, past.status, past.decision) == (pending.id, status, decision)
    assert past.decided_at is not None
    with pytest.raises(Conflict) as refused:
        await keel.approvals.decide(accepted.session_id, pending.id, "approve")
    assert refused.value.type == "/problems/approval-decided"
    assert refused.value.extra["approval_status"] == status


async def test_usage_sums_the_callers_model_calls(keel: AsyncKeel) -> None:
    result = await keel.chat("count me")
    report = await keel.usage(group_by="session")
    [mine] = [item for item in report.items if item.key == result.session_id]
    assert mine.turns == 1 and mine.prompt_tokens > 0 and mine.completion_tokens > 0
    assert report.group_by == "session"
    by_user = await keel.usage(group_by="user")
    assert [item.key for item in by_user.items] == ["ann"]  # only the caller's own


async def test_a_sync_chat_past_its_wait_answers_the_turn_status(keel: AsyncKeel) -> None:
    result = await keel.chat(LOOKUP, wait_s=0.5)
    assert (result.status, result.message) == ("awaiting_approval", None)
    [pending] = await keel.approvals.list(result.session_id)
    await keel.approvals.decide(result.session_id, pending.id, "approve")


async def test_triggers_start_turns(keel: AsyncKeel) -> None:
    assert {t.name for t in await keel.triggers.list()} == {"new-ticket", "signed"}
    accepted = await keel.triggers.fire("new-ticket", data={"title": "printer"})
    assert isinstance(accepted, ChatAccepted) and accepted.status == "queued"
    [*_, end] = [e async for e in keel.events(accepted.session_id, turn_id=accepted.turn_id)]
    assert end.type == "turn.completed"
    turn = await keel.sessions.turn(accepted.session_id, accepted.turn_id)
    assert turn.message and turn.message.content == "echo: New ticket: printer"
    result = await keel.triggers.fire(
        "new-ticket", data={"title": "again"}, session_id=accepted.session_id, mode="sync"
    )
    assert result.message and result.message.content == "echo: New ticket: again"
    signed = await keel.triggers.fire("signed", data={"n": 3}, mode="sync", secret=SECRET)
    assert signed.message and signed.message.content == "echo: Signed 3"
    with pytest.raises(Unauthorized) as refused:
        await keel.triggers.fire("signed", data={"n": 4}, secret="wrong")
    assert refused.value.type == "/problems/bad-signature"


async def test_errors_are_subclasses_carrying_the_problem(keel: AsyncKeel) -> None:
    with pytest.raises(NotFound) as missing:
        await keel.sessions.get("no-such-session")
    problem = missing.value.problem
    assert problem is not None and problem.status == 404 == missing.value.status
    assert (problem.type, problem.title) == ("/problems/session-not-found", "Not Found")
    assert problem.instance == "/v1/sessions/no-such-session"
    with pytest.raises(InvalidRequest) as invalid:
        await keel.chat("")
    assert invalid.value.type == "/problems/invalid-request"
    assert [e.field for e in invalid.value.errors] == ["body.message"]
    with pytest.raises(InvalidRequest):
        await keel.sessions.get("not an id!")
    with pytest.raises(NotFound) as no_trigger:
        await keel.triggers.fire("nobody")
    assert no_trigger.value.type == "/problems/trigger-not-found"
    with pytest.raises(NotFound):  # a stream's own errors too, before it starts
        [e async for e in keel.events("no-such-session")]
    async with AsyncKeel("http://127.0.0.1:9", max_retries=1) as nowhere:
        with pytest.raises(KeelConnectionError, match="2 attempts"):
            await nowhere.agents.list()


async def test_a_lost_answer_is_retried_with_the_same_idempotency_key(
    keel: AsyncKeel, url: str
) -> None:
    sent: list[tuple[str, str | None]] = []
    replayed: list[str | None] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append((request.method, request.headers.get("idempotency-key")))

    async def on_response(response: httpx.Response) -> None:
        replayed.append(response.headers.get("idempotent-replayed"))

    session = await keel.sessions.create()
    hooks = {"request": [on_request], "response": [on_response]}
    async with (
        proxy_to(url) as proxy,
        httpx.AsyncClient(event_hooks=hooks) as http,
        AsyncKeel(proxy.url, user_id="ann", http_client=http) as through,
    ):
        proxy.swallow = 1  # the API answers the first attempt; the answer never arrives
        result = await through.chat("only once", session_id=session.id)
    [(method, key), again] = sent
    assert method == "POST" and key is not None and again == (method, key)
    assert replayed == ["true"]  # the first attempt's outcome, not a second turn
    messages = (await keel.sessions.get(session.id)).messages
    assert [(m.role, m.turn_id) for m in messages] == [
        ("user", result.turn_id),
        ("assistant", result.turn_id),
    ]


async def test_a_key_sent_again_answers_with_the_first_outcome(keel: AsyncKeel) -> None:
    key = f"sdk:{uuid.uuid4().hex}"
    first = await keel.sessions.create(idempotency_key=key)
    assert (await keel.sessions.create(idempotency_key=key)).id == first.id
    with pytest.raises(InvalidRequest) as reused:
        await keel.sessions.create(metadata={"other": True}, idempotency_key=key)
    assert reused.value.type == "/problems/idempotency-key-reused"
