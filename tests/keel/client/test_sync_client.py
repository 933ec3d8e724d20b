"""`Keel`, the blocking client, against the API on a real port: run on a thread, as a script would.

The API serves on this test's event loop, so each test hands its blocking calls
to a thread and awaits them.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from keel.client import Conflict, Event, InvalidRequest, Keel, NotFound
from tests.keel.client.proxy import proxy_to
from tests.keel.client.stack import LOOKUP

pytestmark = pytest.mark.timeout(60)


async def test_sessions_chat_and_stream(url: str) -> None:
    def run() -> None:
        with Keel(url, user_id="cy") as keel:
            session = keel.sessions.create()
            answer = keel.chat("hello", session_id=session.id)
            assert answer.message and answer.message.content == "echo: hello"
            events = list(keel.stream("a b", session_id=session.id))
            assert [e.type for e in events if e.offset is not None][-1] == "turn.completed"
            deltas = [e.data["text"] for e in events if e.type == "message.delta"]
            assert "".join(deltas) == "echo: a b"
            assert len(keel.sessions.get(session.id).messages) == 4
            assert session.id in {s.id for s in keel.sessions.list(user_id="cy").sessions}
            assert [a.name for a in keel.agents.list()] == ["assistant"]
            assert keel.sessions.close(session.id).status == "closed"

    await asyncio.to_thread(run)


async def test_approvals_and_triggers(url: str) -> None:
    def run() -> None:
        with Keel(url) as keel:
            accepted = keel.send(LOOKUP)
            with keel.events(accepted.session_id, turn_id=accepted.turn_id) as events:
                requested = next(e for e in events if e.type == "approval.requested")
            [pending] = keel.approvals.list(accepted.session_id)
            assert pending.id == requested.data["approval_id"]
            keel.approvals.decide(accepted.session_id, pending.id, "approve")
            with pytest.raises(Conflict):
                keel.approvals.decide(accepted.session_id, pending.id, "reject")
            fired = keel.triggers.fire("new-ticket", data={"title": "x"}, mode="sync")
            assert fired.message and fired.message.content == "echo: New ticket: x"
            [past] = keel.approvals.list(accepted.session_id, status="decided")
            assert (past.id, past.decision) == (pending.id, "approve")
            assert fired.session_id in {item.key for item in keel.usage().items}

    await asyncio.to_thread(run)


async def test_errors_are_subclasses_carrying_the_problem(url: str) -> None:
    def run() -> None:
        with Keel(url) as keel:
            with pytest.raises(NotFound) as missing:
                keel.sessions.turn("no-such-session", "t1")
            assert missing.value.type == "/problems/session-not-found"
            with pytest.raises(InvalidRequest) as invalid:
                list(keel.stream(""))
            assert [e.field for e in invalid.value.errors] == ["body.message"]

    await asyncio.to_thread(run)


async def test_events_resume_after_a_dropped_connection(url: str) -> None:
    loop = asyncio.get_running_loop()
    async with proxy_to(url) as proxy:

        def run() -> list[Event]:
            seen: list[Event] = []
            with Keel(url) as keel, Keel(proxy.url) as through:
                session = keel.sessions.create()
                turn = keel.send("[[sleep 0.3]] slow", session_id=session.id).turn_id
                for event in through.events(session.id, turn_id=turn):
                    seen.append(event)
                    if event.type == "turn.started":
                        loop.call_soon_threadsafe(proxy.cut)
            return seen

        seen = await asyncio.to_thread(run)
    assert [e.type for e in seen if e.offset is not None] == [
        "turn.started",
        "message.completed",
        "turn.completed",
    ]
    assert len(proxy.requests) == 2 and b"last-event-id: 0" in proxy.requests[1].lower()


async def test_a_lost_answer_is_retried_with_the_same_key(url: str) -> None:
    keys: list[str | None] = []
    replayed: list[str | None] = []
    hooks = {
        "request": [lambda request: keys.append(request.headers.get("idempotency-key"))],
        "response": [lambda response: replayed.append(response.headers.get("idempotent-replayed"))],
    }
    async with proxy_to(url) as proxy:
        proxy.swallow = 1

        def run() -> str:
            with httpx.Client(event_hooks=hooks) as http, Keel(proxy.url, http_client=http) as keel:
                return keel.sessions.create(metadata={"run": uuid.uuid4().hex}).id

        session_id = await asyncio.to_thread(run)
    assert len(keys) == 2 and keys[0] == keys[1] is not None
    assert replayed == ["true"]
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 200
