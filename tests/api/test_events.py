"""Event streams over SSE: order, resume, filters, heartbeats, closed sessions, history cost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from keel.deltas import InProcessDeltaBus
from keel.formation import Formation
from keel.settings import Settings
from keel.sse import SseEvent
from keel.store import TranscriptStore
from tests.api.live import LiveApi, durable, live_api, read_events

pytestmark = pytest.mark.timeout(90)
POLL_UPDATE = "__temporal_workflow_stream_poll"


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Heartbeats and session discovery fast enough for a test to see them."""
    return settings.model_copy(update={"sse_heartbeat_s": 0.3, "events_refresh_s": 0.3})


@pytest.fixture
def scripted(formation: Formation) -> Formation:
    """The built-in formation with the scripted provider, steered from the message."""
    model = formation.models["default"].model_copy(update={"provider": "scripted"})
    return formation.model_copy(update={"models": {**formation.models, "default": model}})


@pytest.fixture
async def live(
    client: Client, fast: Settings, scripted: Formation, store: TranscriptStore
) -> AsyncIterator[LiveApi]:
    bus = InProcessDeltaBus()
    async with live_api(client, fast, scripted, store, deltas=bus) as api:
        yield api


def _types(events: list[SseEvent]) -> list[str]:
    return [e.event for e in events]


def _ids(events: list[SseEvent]) -> list[int]:
    return [int(e.id) for e in durable(events) if e.id is not None]


async def _chat(http: httpx.AsyncClient, message: str, **body: Any) -> list[SseEvent]:
    return await read_events(
        http, "POST", "/v1/chat", json={"message": message, "stream": True, **body}
    )


async def test_a_plain_turn_streams_deltas_between_its_start_and_its_answer(live: LiveApi) -> None:
    events = await _chat(live.http, "hello there world")
    kinds = _types(events)
    assert kinds[0] == "turn.started"
    assert kinds[-2:] == ["message.completed", "turn.completed"]
    assert set(kinds[1:-2]) == {"message.delta"}
    deltas = [e.json() for e in events if e.event == "message.delta"]
    assert "".join(d["text"] for d in deltas) == "echo: hello there world"
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    assert {(d["step"], d["attempt"]) for d in deltas} == {(1, 1)}
    assert all(e.id is None for e in events if e.event == "message.delta")
    ids = _ids(events)
    assert ids == list(range(ids[0], ids[0] + 3))
    data = [e.json() for e in events]
    assert len({(d["session_id"], d["turn_id"]) for d in data}) == 1
    assert all(d["ts"] and d["type"] == e.event for d, e in zip(data, events, strict=True))
    assert data[-2]["content"] == "echo: hello there world" and data[-2]["role"] == "assistant"
    assert data[-1]["usage"]["completion_tokens"] > 0


async def test_a_tool_turn_orders_call_result_and_answer(live: LiveApi) -> None:
    events = await _chat(live.http, 'look [[call lookup {"q": "x"}]] [[say found it]]')
    assert _types(durable(events)) == [
        "turn.started",
        "tool.call",
        "tool.result",
        "message.completed",
        "turn.completed",
    ]
    call, result = (e.json() for e in events if e.event in ("tool.call", "tool.result"))
    assert call["call_id"] == result["call_id"] == "call_1"
    assert call["tool"] == "lookup" and call["arguments"] == {"q": "x"}
    assert result["is_error"] is True and "not available" in result["glimpse"]
    # The answer streams in the second model call, after the tool's result.
    first_delta = _types(events).index("message.delta")
    assert first_delta > _types(events).index("tool.result")
    deltas = [e.json() for e in events if e.event == "message.delta"]
    assert "".join(d["text"] for d in deltas) == "found it"
    assert {d["step"] for d in deltas} == {2}


async def test_a_failed_turn_ends_the_chat_stream(live: LiveApi) -> None:
    events = await _chat(live.http, "[[fail 400]]")
    assert _types(events) == ["turn.started", "turn.failed"]
    assert "400" in events[-1].json()["error"]


async def _session(http: httpx.AsyncClient, turns: int) -> str:
    session_id = ""
    for turn in range(turns):
        body = {"message": f"turn {turn}"} | ({"session_id": session_id} if session_id else {})
        answer = await http.post("/v1/chat", json=body)
        assert answer.status_code == 200, answer.text
        session_id = answer.json()["session_id"]
    return session_id


async def test_resuming_after_a_dropped_connection_gives_exactly_the_missing_events(
    live: LiveApi,
) -> None:
    session_id = await _session(live.http, 2)
    url = f"/v1/sessions/{session_id}/events"
    # Another client stays connected throughout, so the resumed one must catch
    # up from the retained stream before it joins the shared subscription.
    watcher = asyncio.create_task(read_events(live.http, "GET", url, limit=12))
    first = await read_events(live.http, "GET", url, limit=2)
    assert _ids(first) == [0, 1] and _types(first) == ["turn.started", "message.completed"]

    await _session_turn(live.http, session_id, "while away")
    header = await read_events(
        live.http, "GET", url, limit=7, headers={"Last-Event-ID": first[-1].id or ""}
    )
    assert _ids(header) == list(range(2, 9))
    assert durable(header)[-2].json()["content"] == "echo: while away"
    # `?after=` resumes the same way; Last-Event-ID wins when both are given.
    query = await read_events(live.http, "GET", f"{url}?after=6", limit=2)
    assert _ids(query) == [7, 8]
    both = await read_events(
        live.http, "GET", f"{url}?after=0", limit=1, headers={"Last-Event-ID": "7"}
    )
    assert _ids(both) == [8]

    await _session_turn(live.http, session_id, "and once more")
    everything = await asyncio.wait_for(watcher, 30)
    assert _ids(everything) == list(range(12))
    assert live.state.streams.subscriptions == 1


async def test_a_listener_from_before_the_shared_subscription_reads_the_retained_events(
    live: LiveApi,
) -> None:
    session_id = await _session(live.http, 2)
    url = f"/v1/sessions/{session_id}/events"
    # The shared subscription starts at offset 4, so offsets 0-3 were never in this process.
    late = asyncio.create_task(read_events(live.http, "GET", f"{url}?after=3", limit=5))
    await asyncio.sleep(0.3)
    early = asyncio.create_task(read_events(live.http, "GET", url, limit=9))
    await asyncio.sleep(0.3)
    await _session_turn(live.http, session_id, "third")
    assert _ids(await asyncio.wait_for(late, 30)) == [4, 5, 6, 7, 8]
    assert _ids(await asyncio.wait_for(early, 30)) == list(range(9))
    assert live.state.streams.subscriptions == 1


async def _session_turn(http: httpx.AsyncClient, session_id: str, message: str) -> None:
    answer = await http.post("/v1/chat", json={"message": message, "session_id": session_id})
    assert answer.json()["status"] == "completed", answer.text


async def test_turn_filter_keeps_one_turn_and_ends_after_it(live: LiveApi) -> None:
    session_id = await _session(live.http, 3)
    turns = (await live.http.get(f"/v1/sessions/{session_id}")).json()["messages"]
    second = turns[2]["turn_id"]
    events = await read_events(
        live.http, "GET", f"/v1/sessions/{session_id}/events?turn_id={second}"
    )
    assert _types(events) == ["turn.started", "message.completed", "turn.completed"]
    assert {e.json()["turn_id"] for e in events} == {second}
    assert _ids(events) == [3, 4, 5]


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {"Last-Event-ID": "abc"}), ("", {"Last-Event-ID": "-5"}), ("?after=x", {})],
)
async def test_a_malformed_resume_point_is_a_problem(
    live: LiveApi, query: str, headers: dict[str, str]
) -> None:
    session_id = await _session(live.http, 1)
    answer = await live.http.get(f"/v1/sessions/{session_id}/events{query}", headers=headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"


async def test_events_of_an_unknown_session_are_not_found(live: LiveApi) -> None:
    answer = await live.http.get("/v1/sessions/nope/events")
    assert answer.status_code == 404


async def test_an_idle_stream_gets_heartbeats(live: LiveApi) -> None:
    session_id = await _session(live.http, 1)
    lines: list[str] = []
    async with live.http.stream("GET", f"/v1/sessions/{session_id}/events?after=2") as response:
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith(":"):
                break
    assert lines == [lines[-1]] and lines[0].startswith(": ping")


async def test_the_stream_of_a_closed_session_drains_and_ends(live: LiveApi) -> None:
    session_id = await _session(live.http, 2)
    url = f"/v1/sessions/{session_id}/events"
    # One client is connected when the session closes, another comes after.
    during = asyncio.create_task(read_events(live.http, "GET", f"{url}?after=4"))
    await asyncio.sleep(0.3)
    assert (await live.http.delete(f"/v1/sessions/{session_id}")).status_code == 200
    assert _types(await asyncio.wait_for(during, 30)) == ["turn.completed", "session.closed"]
    after = await asyncio.wait_for(read_events(live.http, "GET", url), 30)
    assert _ids(after) == list(range(7))
    assert after[-1].json()["reason"] == "closed"


async def _settled_history(client: Client, session_id: str) -> list[Any]:
    """The session's history once it stops moving (the next poll is waiting)."""
    handle = client.get_workflow_handle(f"keel/default/{session_id}")
    seen = -1
    while True:
        events = list((await handle.fetch_history()).events)
        if len(events) == seen:
            return events
        seen = len(events)
        await asyncio.sleep(0.4)


async def _one_watched_turn(api: LiveApi, client: Client, text: str) -> tuple[int, str]:
    """History events a turn adds while one SSE client watches, and the text of its deltas."""
    session_id = (await api.http.post("/v1/sessions", json={})).json()["id"]
    url = f"/v1/sessions/{session_id}/events"
    watcher = asyncio.create_task(read_events(api.http, "GET", url, until="turn.completed"))
    before = len(await _settled_history(client, session_id))
    answer = await api.http.post("/v1/chat", json={"message": text, "session_id": session_id})
    assert answer.json()["status"] == "completed", answer.text
    events = await asyncio.wait_for(watcher, 30)
    after = len(await _settled_history(client, session_id))
    texts = [e.json()["text"] for e in events if e.event == "message.delta"]
    assert len(texts) != 1, "a streamed answer comes in many pieces"
    return after - before, "".join(texts)


async def test_streaming_2000_tokens_adds_no_history_beyond_a_non_streaming_turn(
    client: Client,
    fast: Settings,
    formation: Formation,
    store: TranscriptStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fakes.llm_server import FakeLLMServer

    monkeypatch.setenv("KEEL_TEST_LLM_KEY", "k")
    text = " ".join(f"w{i}" for i in range(2000))
    async with FakeLLMServer() as server:
        model = formation.models["default"].model_copy(
            update={
                "provider": "openai",
                "model": "fake",
                "base_url": server.openai_base_url,
                "api_key_env": "KEEL_TEST_LLM_KEY",
            }
        )
        remote = formation.model_copy(update={"models": {**formation.models, "default": model}})
        server.enqueue_reply(text)
        async with live_api(client, fast, remote, store, deltas=InProcessDeltaBus()) as api:
            streamed, deltas = await _one_watched_turn(api, client, "talk")
        server.enqueue_reply(text)
        async with live_api(client, fast, remote, store, deltas=None) as api:
            plain, no_deltas = await _one_watched_turn(api, client, "talk")
    assert (deltas, no_deltas) == (text, "")
    assert [r.body.get("stream") for r in server.requests] == [True, None]
    assert streamed <= plain + 4, f"streamed turn added {streamed} events, plain {plain}"


def _polls(history: list[Any]) -> int:
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    return sum(
        1
        for e in history
        if e.event_type == accepted
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == POLL_UPDATE
    )


async def test_two_clients_of_a_session_share_one_subscription(
    live: LiveApi, client: Client
) -> None:
    async def watched(clients: int) -> int:
        session_id = (await live.http.post("/v1/sessions", json={})).json()["id"]
        url = f"/v1/sessions/{session_id}/events"
        watchers = [
            asyncio.create_task(read_events(live.http, "GET", url, limit=9)) for _ in range(clients)
        ]
        await asyncio.sleep(0.5)
        for turn in range(3):
            # A slow model call, so each turn's events come in two polls.
            await _session_turn(live.http, session_id, f"[[sleep 0.4]] turn {turn}")
        results = await asyncio.wait_for(asyncio.gather(*watchers), 30)
        assert all(_ids(r) == list(range(9)) for r in results)
        return _polls(await _settled_history(client, session_id))

    one, two = await watched(1), await watched(2)
    # Two subscriptions would poll twice as often: at least 6 more polls.
    assert one >= 6 and two <= one + 2, f"one client: {one} polls, two clients: {two}"


async def test_all_events_merges_the_callers_sessions_and_resumes(live: LiveApi) -> None:
    ann, bob = {"X-User-Id": "ann"}, {"X-User-Id": "bob"}
    first = (await live.http.post("/v1/chat", json={"message": "a"}, headers=ann)).json()
    watcher = asyncio.create_task(read_events(live.http, "GET", "/v1/events", limit=6, headers=ann))
    await asyncio.sleep(0.5)
    await live.http.post(
        "/v1/chat", json={"message": "b", "session_id": first["session_id"]}, headers=ann
    )
    await live.http.post("/v1/chat", json={"message": "not ann's"}, headers=bob)
    second = (await live.http.post("/v1/chat", json={"message": "c"}, headers=ann)).json()
    events = await asyncio.wait_for(watcher, 30)

    a, c = first["session_id"], second["session_id"]
    # The session running at connect streams live; the one started later from its start.
    assert sorted(e.id or "" for e in durable(events)) == sorted(
        [f"{a}:3", f"{a}:4", f"{a}:5", f"{c}:0", f"{c}:1", f"{c}:2"]
    )
    assert all(e.json()["session_id"] in (a, c) for e in events)
    resumed = await read_events(
        live.http, "GET", "/v1/events", limit=2, headers={**ann, "Last-Event-ID": f"{a}:3"}
    )
    assert [e.id for e in durable(resumed)] == [f"{a}:4", f"{a}:5"]
    bad = await live.http.get("/v1/events?after=nope", headers=ann)
    assert bad.status_code == 422


async def test_deltas_of_a_retried_call_carry_its_attempt(live: LiveApi) -> None:
    events = await _chat(live.http, "[[fail 503 times=1]] [[say second time lucky]]")
    deltas = [e.json() for e in events if e.event == "message.delta"]
    assert {d["attempt"] for d in deltas} == {2}
    assert "".join(d["text"] for d in deltas) == "second time lucky"


async def test_an_offline_model_streams_word_by_word_in_process(live: LiveApi) -> None:
    events = await _chat(live.http, "one two three")
    texts = [e.json()["text"] for e in events if e.event == "message.delta"]
    assert texts == ["echo: ", "one ", "two ", "three"]
