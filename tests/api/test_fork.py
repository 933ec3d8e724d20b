"""`POST /v1/sessions/{id}/fork`: the fork's first turn sees exactly the prefix; the original
is untouched; bad fork points are refused clearly. One stack for the module, on a fake
OpenAI-compatible server that records what each model call was sent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api import create_app
from keel.formation import Formation, formation_from_data
from keel.messages import Message, ToolCall
from keel.names import Activities
from keel.settings import Settings
from keel.store import TranscriptStore, open_store
from tests._postgres import postgres_schema
from tests.conftest import running_workers
from tests.fakes.llm_server import FakeLLMServer

CLIENT = "fork-client-0123456789abcdef"
ANN = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "ann"}
BOB = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "bob"}
KEY_ENV = "KEEL_TEST_FORK_LLM_KEY"


def _formation(llm: FakeLLMServer, buffer_messages: int) -> Formation:
    """`assistant` on the fake server, with `search` and `lookup` (which waits for approval)."""
    model = {"provider": "openai", "model": "fake", "base_url": llm.openai_base_url}
    return formation_from_data(
        {
            "models": {"default": {**model, "api_key_env": KEY_ENV}},
            "agents": [{"name": "assistant", "tools": ["search", "lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
            "memory": {"buffer_messages": buffer_messages},
        },
        env={},
    )


@contextlib.asynccontextmanager
async def _stack(
    env: WorkflowEnvironment,
    data_dir: Path,
    store_url: str,
    llm: FakeLLMServer,
    *,
    buffer_messages: int = 50,
) -> AsyncIterator[tuple[httpx.AsyncClient, TranscriptStore]]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=data_dir,
        temporal_address=env.client.service_client.config.target_host,
        sessions_task_queue=f"sessions-{suffix}",
        activities_task_queue=f"activities-{suffix}",
        client_keys=CLIENT,
        max_sessions_per_user=0,
        rate_limit_per_minute=0,
    )
    formation = _formation(llm, buffer_messages)
    store = open_store(store_url, data_dir=data_dir)
    app = create_app(settings, formation, client=env.client, store=store)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, "k")
            async with (
                running_workers(env.client, settings, formation, store),
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://keel", headers=ANN
                ) as http,
            ):
                yield http, store
    finally:
        await store.close()


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
async def stack(
    temporal_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    llm: FakeLLMServer,
) -> AsyncIterator[tuple[httpx.AsyncClient, TranscriptStore]]:
    async with _stack(temporal_env, tmp_path_factory.mktemp("fork"), "sqlite:///keel.db", llm) as s:
        yield s


@pytest.fixture
def api(stack: tuple[httpx.AsyncClient, TranscriptStore], llm: FakeLLMServer) -> httpx.AsyncClient:
    llm.reset()
    return stack[0]


async def _session(api: httpx.AsyncClient, **body: Any) -> str:
    created = await api.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


async def _chat(api: httpx.AsyncClient, session_id: str, text: str) -> dict[str, Any]:
    answer = await api.post("/v1/chat", json={"message": text, "session_id": session_id})
    assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text
    result: dict[str, Any] = answer.json()
    return result


async def _sent_all(
    api: httpx.AsyncClient, llm: FakeLLMServer, session_id: str, text: str
) -> list[Any]:
    """The messages of each model call of a turn of `text` (summaries' calls too)."""
    first = len(llm.requests)
    await _chat(api, session_id, text)
    return [r.body["messages"] for r in llm.requests[first:]]


async def _sent(api: httpx.AsyncClient, llm: FakeLLMServer, session_id: str, text: str) -> Any:
    """The messages the model got for a turn of `text` that makes one model call."""
    [sent] = await _sent_all(api, llm, session_id, text)
    return sent


async def _fork(api: httpx.AsyncClient, session_id: str, **body: Any) -> dict[str, Any]:
    forked = await api.post(f"/v1/sessions/{session_id}/fork", json=body)
    assert forked.status_code == 201, forked.text
    assert forked.headers["location"] == f"/v1/sessions/{forked.json()['id']}"
    result: dict[str, Any] = forked.json()
    return result


async def _messages(api: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    session = await api.get(f"/v1/sessions/{session_id}")
    assert session.status_code == 200, session.text
    messages: list[dict[str, Any]] = session.json()["messages"]
    return messages


def _transcript(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a fork must hold of each message: all of it but the tokens of the call."""
    return [tuple(v for k, v in m.items() if k != "usage") for m in messages]


def _problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"/problems/{type_}", problem
    return problem


async def _pending(api: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    for _ in range(200):
        approvals = (await api.get(f"/v1/sessions/{session_id}/approvals")).json()["approvals"]
        if approvals:
            first: dict[str, Any] = approvals[0]
            return first
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _activities(env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_a_fork_after_plain_turns_sees_exactly_the_prefix(
    api: httpx.AsyncClient, llm: FakeLLMServer, temporal_env: WorkflowEnvironment
) -> None:
    original = await _session(api, metadata={"topic": "forks"})
    await _chat(api, original, "one")
    await _chat(api, original, "two")
    before = await _messages(api, original)

    fork = await _fork(api, original)
    assert fork["forked_from"] == {"session_id": original, "seq": 4}
    assert (fork["agent"], fork["user_id"], fork["metadata"]) == (
        "assistant",
        "ann",
        {"topic": "forks"},
    )
    assert _transcript(await _messages(api, fork["id"])) == _transcript(before)
    assert all(m["usage"] is None for m in await _messages(api, fork["id"]))

    # The fork's first turn and the original's next one send the model the same thing.
    forked_sent = await _sent(api, llm, fork["id"], "three")
    original_sent = await _sent(api, llm, original, "three")
    assert forked_sent == original_sent
    assert [m["content"] for m in forked_sent] == ["one", "fake: one", "two", "fake: two", "three"]
    # The store held the prefix the model call expects: nothing was re-seeded.
    assert await _activities(temporal_env, fork["workflow_id"]) == [Activities.CALL_MODEL]
    assert (await _messages(api, original))[:4] == before

    middle = await _fork(api, original, upto_seq=2)
    assert middle["forked_from"] == {"session_id": original, "seq": 2}
    sent = await _sent(api, llm, middle["id"], "again")
    assert [m["content"] for m in sent] == ["one", "fake: one", "again"]
    detail = (await api.get(f"/v1/sessions/{middle['id']}")).json()
    assert [m["seq"] for m in detail["messages"]] == [0, 1, 2, 3]
    assert detail["usage"]["prompt_tokens"] > 0 and detail["forked_from"] == middle["forked_from"]

    for _ in range(100):
        listed = (await api.get("/v1/sessions?limit=200")).json()["sessions"]
        found = {s["id"]: s.get("forked_from") for s in listed}
        if middle["id"] in found:
            break
        await asyncio.sleep(0.1)
    assert found[middle["id"]] == {"session_id": original, "seq": 2}
    assert found[original] is None


async def _tool_turn_then_fork(api: httpx.AsyncClient, llm: FakeLLMServer) -> None:
    """A tool turn, a fork after it: the fork's first call carries the call and its result."""
    original = await _session(api)
    llm.enqueue_reply(tool_calls=[{"id": "call_a", "name": "search", "arguments": {"query": "x"}}])
    llm.enqueue_reply("nothing, sorry")
    await _chat(api, original, "find x")
    fork = await _fork(api, original)
    assert fork["forked_from"]["seq"] == 4
    sent = await _sent(api, llm, fork["id"], "thanks")
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    call, result = sent[1]["tool_calls"][0], sent[2]
    assert (call["id"], call["function"]["name"]) == ("call_a", "search")
    assert (result["tool_call_id"], result["content"]) == ("call_a", "nothing found for 'x'")
    assert sent == await _sent(api, llm, original, "thanks")


async def test_a_fork_after_a_tool_turn_carries_the_call_and_its_result(
    api: httpx.AsyncClient, llm: FakeLLMServer
) -> None:
    await _tool_turn_then_fork(api, llm)


async def test_a_fork_on_postgres_carries_a_tool_turn(
    temporal_env: WorkflowEnvironment, tmp_path: Path, llm: FakeLLMServer
) -> None:
    llm.reset()
    async with postgres_schema() as url, _stack(temporal_env, tmp_path, url, llm) as (api, _):
        await _tool_turn_then_fork(api, llm)


async def test_a_fork_takes_the_summary_of_what_left_its_window(
    temporal_env: WorkflowEnvironment, tmp_path: Path, llm: FakeLLMServer
) -> None:
    llm.reset()
    store_url = "sqlite:///keel.db"
    async with _stack(temporal_env, tmp_path, store_url, llm, buffer_messages=4) as (api, store):
        original = await _session(api)
        for text in ("one", "two", "three"):
            await _chat(api, original, text)
        workflow_id = (await api.get(f"/v1/sessions/{original}")).json()["workflow_id"]
        summary = await store.latest_summary(workflow_id)
        assert summary is not None and summary.upto_seq == 3

        fork = await _fork(api, original)
        forked = await _sent_all(api, llm, fork["id"], "four")
        # The same summary to build on, from the same seq, and the same window after it.
        assert forked == await _sent_all(api, llm, original, "four")
        assert len(forked) == 2 and "Summary so far:\nfake:" in forked[0][-1]["content"]
        assert (
            forked[1][0]["role"] == "system" and "Summary of the earlier" in forked[1][0]["content"]
        )


async def test_a_turn_waiting_for_approval_is_left_out_until_it_ends(
    api: httpx.AsyncClient, llm: FakeLLMServer
) -> None:
    original = await _session(api)
    await _chat(api, original, "hello")
    llm.enqueue_reply(tool_calls=[{"id": "call_l", "name": "lookup", "arguments": {"invoice": 7}}])
    waiting = await api.post(
        "/v1/chat", json={"message": "invoice 7?", "session_id": original, "mode": "async"}
    )
    approval = await _pending(api, original)

    # Seqs 2 (the question) and 3 (the call) belong to a turn that has not ended.
    early = await _fork(api, original)
    assert early["forked_from"]["seq"] == 2
    for upto in (3, 4):
        refused = await api.post(f"/v1/sessions/{original}/fork", json={"upto_seq": upto})
        problem = _problem(refused, 409, "turn-unfinished")
        assert problem["turn_id"] == waiting.json()["turn_id"]
    _problem(
        await api.post(f"/v1/sessions/{original}/fork", json={"upto_seq": 5}),
        409,
        "fork-point-invalid",
    )

    llm.enqueue_reply("40 EUR")
    url = f"/v1/sessions/{original}/approvals/{approval['id']}"
    assert (await api.post(url, json={"decision": "approve"})).status_code == 200
    for _ in range(200):
        if (await api.get(waiting.json()["url"])).json()["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    late = await _fork(api, original)
    assert late["forked_from"]["seq"] == 6
    assert (await api.get(f"/v1/sessions/{late['id']}")).json()["pending_approvals"] == []
    sent = await _sent(api, llm, late["id"], "and invoice 8?")
    roles = ["user", "assistant", "user", "assistant", "tool", "assistant", "user"]
    assert [m["role"] for m in sent] == roles
    assert (sent[4]["tool_call_id"], sent[4]["content"]) == ("call_l", "invoice 7: 40 EUR")
    # The fork made while the approval waited still sees only the turn before it.
    assert [m["content"] for m in await _sent(api, llm, early["id"], "hi")] == [
        "hello",
        "fake: hello",
        "hi",
    ]


async def test_bad_fork_points_are_refused_clearly(
    stack: tuple[httpx.AsyncClient, TranscriptStore], llm: FakeLLMServer
) -> None:
    api, store = stack
    llm.reset()
    original = await _session(api)
    await _chat(api, original, "one")
    llm.enqueue_reply(tool_calls=[{"id": "call_s", "name": "search", "arguments": {"query": "y"}}])
    await _chat(api, original, "find y")  # seqs 2 to 5
    url = f"/v1/sessions/{original}/fork"

    _problem(await api.post(url, json={"upto_seq": -1}), 422, "invalid-request")
    _problem(await api.post(url, json={"upto_seq": "two"}), 422, "invalid-request")
    past = _problem(await api.post(url, json={"upto_seq": 7}), 409, "fork-point-invalid")
    assert "past the end" in past["detail"]
    inside = _problem(await api.post(url, json={"upto_seq": 3}), 409, "fork-point-invalid")
    assert "fork at 2 or 6" in inside["detail"] and inside["turn_id"]
    assert (await _fork(api, original, upto_seq=0))["forked_from"]["seq"] == 0
    assert (await _fork(api, original, upto_seq=6))["forked_from"]["seq"] == 6
    bare = await api.post(url)  # no body: the default
    assert bare.status_code == 201 and bare.json()["forked_from"]["seq"] == 6
    _problem(await api.post("/v1/sessions/nobody/fork", json={}), 404, "session-not-found")

    # A turn that ended after its model asked for a tool (a failure the store kept): a
    # prefix may not end there, and the default cuts before it.
    workflow_id = (await api.get(f"/v1/sessions/{original}")).json()["workflow_id"]
    now = datetime.now(UTC)
    ask = ToolCall(id="call_z", name="search", arguments={"query": "z"})
    await store.upsert(
        workflow_id,
        [
            Message(seq=6, role="user", content="z?", turn_id="broken", created_at=now),
            Message(
                seq=7,
                role="assistant",
                content="",
                turn_id="broken",
                created_at=now,
                tool_calls=[ask],
            ),
        ],
    )
    dangling = _problem(await api.post(url, json={"upto_seq": 8}), 409, "fork-point-invalid")
    assert "call_z" in dangling["detail"]
    assert (await _fork(api, original))["forked_from"]["seq"] == 6

    closed = await _session(api)
    await _chat(api, closed, "bye")
    assert (await api.delete(f"/v1/sessions/{closed}")).status_code == 200
    assert (await _fork(api, closed))["forked_from"] == {"session_id": closed, "seq": 2}


async def test_another_users_session_cannot_be_forked(
    api: httpx.AsyncClient, llm: FakeLLMServer
) -> None:
    original = await _session(api)
    await _chat(api, original, "mine")
    refused = await api.post(f"/v1/sessions/{original}/fork", json={}, headers=BOB)
    _problem(refused, 404, "session-not-found")
    assert len(await _messages(api, original)) == 2
    bobs = (await api.get("/v1/sessions", headers=BOB)).json()["sessions"]
    assert all(s["user_id"] == "bob" for s in bobs)


async def test_a_retried_fork_with_its_key_forks_once(api: httpx.AsyncClient) -> None:
    original = await _session(api)
    await _chat(api, original, "once")
    headers = {"Idempotency-Key": f"fork-{uuid.uuid4().hex}"}
    url = f"/v1/sessions/{original}/fork"
    first = await api.post(url, json={}, headers=headers)
    again = await api.post(url, json={}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.post(url, json={"upto_seq": 0}, headers=headers)
    _problem(other, 422, "idempotency-key-reused")
