"""`Idempotency-Key`: a retried POST gets the first one's outcome, and nothing runs twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from api._idempotency import KEY_PATTERN
from keel.formation import Formation, formation_from_data
from keel.names import Activities
from keel.session_handle import SessionHandle
from keel.settings import Settings
from keel.sse import aiter_sse
from keel.store import TranscriptStore
from keel.triggers import sign
from tests.api.live import live_api
from tests.conftest import running_workers
from tests.runs import wait_for_pending

SECRET = "whsec-idem-0123456789"
CLIENT = "client-key-idem-0123456789"
REPLAYED = "idempotent-replayed"


@pytest.fixture
def formation(monkeypatch: pytest.MonkeyPatch) -> Formation:
    monkeypatch.setenv("IDEM_HOOK_SECRET", SECRET)
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
            "triggers": [
                {"name": "ping", "agent": "assistant", "template": "Ping {{ data.n }}"},
                {
                    "name": "signed",
                    "agent": "assistant",
                    "template": "Signed {{ data.n }}",
                    "secret_env": "IDEM_HOOK_SECRET",
                },
            ],
        },
        env={},
    )


def _key(**headers: str) -> dict[str, str]:
    return {"Idempotency-Key": f"k:{uuid.uuid4().hex}", **headers}


async def _messages(api: httpx.AsyncClient, session_id: str) -> list[tuple[str, str]]:
    detail = (await api.get(f"/v1/sessions/{session_id}")).json()
    return [(m["role"], m["content"]) for m in detail["messages"]]


async def _ended(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(300):
        turn: dict[str, Any] = (await api.get(url)).json()
        if turn["status"] in ("completed", "failed"):
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not end")


async def test_a_chat_sent_twice_with_one_key_runs_one_turn(api: httpx.AsyncClient) -> None:
    headers = _key()
    first = await api.post("/v1/chat", json={"message": "hello"}, headers=headers)
    again = await api.post("/v1/chat", json={"message": "hello", "mode": "sync"}, headers=headers)

    assert first.status_code == again.status_code == 200, again.text
    assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    assert first.json()["message"]["content"] == "echo: hello"
    session_id = first.json()["session_id"]
    assert await _messages(api, session_id) == [("user", "hello"), ("assistant", "echo: hello")]

    other = await api.post("/v1/chat", json={"message": "bye"}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert len(await _messages(api, session_id)) == 2


@pytest.mark.parametrize("key", ["", "has space", "a/b", "x" * 256])
async def test_a_malformed_key_is_a_422_naming_the_header(api: httpx.AsyncClient, key: str) -> None:
    response = await api.post("/v1/chat", json={"message": "hi"}, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]


async def test_a_sync_chat_retried_while_the_first_waits_gets_the_same_answer(
    api: httpx.AsyncClient, client: Client
) -> None:
    session = (await api.post("/v1/sessions", json={})).json()
    body = {"message": "slow [[sleep 1.5]]", "session_id": session["id"]}
    headers = _key()
    first = asyncio.create_task(api.post("/v1/chat", json=body, headers=headers))
    await wait_for_pending(SessionHandle(client, session["workflow_id"]), Activities.CALL_MODEL)
    second = await api.post("/v1/chat", json=body, headers=headers)
    answered = await first

    assert answered.status_code == second.status_code == 200, second.text
    assert second.headers[REPLAYED] == "true" and REPLAYED not in answered.headers
    assert second.json()["turn_id"] == answered.json()["turn_id"]
    assert second.json()["message"] == {"role": "assistant", "content": "echo: slow"}
    assert await _messages(api, session["id"]) == [
        ("user", "slow [[sleep 1.5]]"),
        ("assistant", "echo: slow"),
    ]


async def test_a_sync_chat_past_wait_s_is_not_stored_and_its_retry_gets_the_answer(
    api: httpx.AsyncClient,
) -> None:
    body = {"message": "slow [[sleep 1]]", "wait_s": 0.2}
    headers = _key()
    accepted = await api.post("/v1/chat", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    await _ended(api, accepted.json()["url"])

    retried = await api.post("/v1/chat", json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.headers[REPLAYED] == "true"
    answer = retried.json()
    assert (answer["session_id"], answer["turn_id"]) == (
        accepted.json()["session_id"],
        accepted.json()["turn_id"],
    )
    assert answer["message"]["content"] == "echo: slow"
    assert len(await _messages(api, answer["session_id"])) == 2


async def test_an_async_chat_retried_answers_the_same_turn(api: httpx.AsyncClient) -> None:
    headers = _key()
    first = await api.post("/v1/chat", json={"message": "later", "mode": "async"}, headers=headers)
    again = await api.post("/v1/chat", json={"message": "later", "mode": "async"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers[REPLAYED] == "true"
    assert again.headers["location"] == first.headers["location"] == first.json()["url"]
    await _ended(api, first.json()["url"])
    assert len(await _messages(api, first.json()["session_id"])) == 2


async def test_a_streamed_chat_retried_streams_the_same_turn(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    body = {"message": "stream me", "stream": True}
    headers = _key()
    streams: list[tuple[dict[str, str], list[str]]] = []
    async with live_api(client, settings, formation, store, deltas=None) as live:
        for _ in range(2):
            async with live.http.stream("POST", "/v1/chat", json=body, headers=headers) as resp:
                assert resp.status_code == 200
                types = [e.event async for e in aiter_sse(resp.aiter_lines()) if e.id is not None]
                streams.append((dict(resp.headers), types))
        session_id = streams[0][0]["x-session-id"]
        detail = (await live.http.get(f"/v1/sessions/{session_id}")).json()
    (first, first_types), (again, again_types) = streams
    assert first_types[0] == "turn.started" and first_types[-1] == "turn.completed"
    assert again_types == first_types
    assert (again["x-session-id"], again["x-turn-id"]) == (session_id, first["x-turn-id"])
    assert REPLAYED not in first and again[REPLAYED] == "true"
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]


async def test_a_session_created_twice_with_one_key_is_one_session(api: httpx.AsyncClient) -> None:
    headers = _key()
    body = {"metadata": {"ticket": 7}}
    first = await api.post("/v1/sessions", json=body, headers=headers)
    again = await api.post("/v1/sessions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers[REPLAYED] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = await api.post("/v1/sessions", json=body, headers=_key())
    assert other.json()["id"] != first.json()["id"]


async def test_a_key_is_forgotten_after_its_ttl(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    short = settings.model_copy(update={"idempotency_ttl_s": 0.3})
    app = create_app(short, formation, client=client, store=store)
    headers = _key()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://k"
    ) as api:
        first = await api.post("/v1/sessions", json={}, headers=headers)
        await asyncio.sleep(0.5)
        later = await api.post("/v1/sessions", json={"metadata": {"n": 2}}, headers=headers)
    assert later.status_code == 201 and REPLAYED not in later.headers
    assert later.json()["id"] != first.json()["id"]


async def test_forgetting_a_user_forgets_their_keys(api: httpx.AsyncClient) -> None:
    user = f"forgotten-{uuid.uuid4().hex[:8]}"  # other tests forget their own users
    headers = _key(**{"X-User-Id": user})
    first = await api.post("/v1/sessions", json={}, headers=headers)
    forgot = await api.post("/v1/memory/forget", json={"user_id": user})
    assert forgot.status_code == 200 and forgot.json()["rows_deleted"] >= 1, forgot.text
    later = await api.post("/v1/sessions", json={"metadata": {"n": 2}}, headers=headers)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]


async def _approval(api: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    accepted = (
        await api.post("/v1/chat", json={"message": '[[call lookup {"id": 1}]]', "mode": "async"})
    ).json()
    for _ in range(200):
        listed = (await api.get(f"/v1/sessions/{accepted['session_id']}/approvals")).json()
        if listed["approvals"]:
            approval = listed["approvals"][0]["id"]
            return accepted, f"/v1/sessions/{accepted['session_id']}/approvals/{approval}"
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def test_an_approval_decided_twice_with_one_key_is_one_decision(
    api: httpx.AsyncClient,
) -> None:
    accepted, url = await _approval(api)
    headers = _key()
    decided = await api.post(url, json={"decision": "reject", "feedback": "no"}, headers=headers)
    again = await api.post(url, json={"decision": "reject", "feedback": "no"}, headers=headers)
    assert decided.status_code == again.status_code == 200, again.text
    assert again.json() == decided.json() and again.json()["status"] == "rejected"
    assert again.headers[REPLAYED] == "true"
    other = await api.post(url, json={"decision": "approve"}, headers=headers)
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    unkeyed = await api.post(url, json={"decision": "approve"})
    assert unkeyed.json()["type"] == "/problems/approval-decided"
    assert (await _ended(api, accepted["url"]))["status"] == "completed"


async def test_an_approval_whose_answer_was_lost_is_decided_once(
    api: httpx.AsyncClient, store: TranscriptStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted, url = await _approval(api)
    headers = _key()

    async def dies(*args: object) -> None:
        raise RuntimeError("the API died before it answered")

    with monkeypatch.context() as patched:
        patched.setattr(store, "finish_idempotency", dies)
        with pytest.raises(RuntimeError):  # the decision ran; its answer never left
            await api.post(url, json={"decision": "approve"}, headers=headers)
    retried = await api.post(url, json={"decision": "approve"}, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "approved" and retried.headers[REPLAYED] == "true"
    assert (await _ended(api, accepted["url"]))["status"] == "completed"


async def test_a_trigger_fired_twice_with_one_key_runs_one_turn(api: httpx.AsyncClient) -> None:
    headers = _key()
    first = await api.post("/v1/triggers/ping", json={"data": {"n": 1}}, headers=headers)
    again = await api.post("/v1/triggers/ping", json={"data": {"n": 1}}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers[REPLAYED] == "true"

    raw = json.dumps({"data": {"n": 2}, "mode": "sync"}).encode()
    signed = _key(**{"content-type": "application/json"})
    signed["X-Keel-Signature"] = sign(SECRET.encode(), raw)
    hooks = [await api.post("/v1/triggers/signed", content=raw, headers=signed) for _ in range(2)]
    assert hooks[0].status_code == hooks[1].status_code == 200, hooks[1].text
    assert hooks[1].json() == hooks[0].json() and hooks[1].headers[REPLAYED] == "true"

    await _ended(api, first.json()["url"])
    assert await _messages(api, first.json()["session_id"]) == [
        ("user", "Ping 1"),
        ("assistant", "echo: Ping 1"),
    ]
    assert len(await _messages(api, hooks[0].json()["session_id"])) == 2


@pytest.fixture
async def keyed(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"client_keys": CLIENT}), formation, client=client, store=store
    )
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as http,
    ):
        yield http


async def test_two_users_may_send_the_same_key(keyed: httpx.AsyncClient) -> None:
    key = _key()["Idempotency-Key"]
    sessions = {}
    for user in ("ann", "bob"):
        headers = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": user, "Idempotency-Key": key}
        created = await keyed.post(
            "/v1/sessions", json={"metadata": {"who": user}}, headers=headers
        )
        assert created.status_code == 201 and REPLAYED not in created.headers, created.text
        sessions[user] = created.json()
    assert sessions["ann"]["id"] != sessions["bob"]["id"]
    ann = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "ann", "Idempotency-Key": key}
    again = await keyed.post("/v1/sessions", json={"metadata": {"who": "ann"}}, headers=ann)
    assert again.json() == sessions["ann"] and again.headers[REPLAYED] == "true"


async def test_the_openapi_document_declares_the_header(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    keyed = [
        "/v1/chat",
        "/v1/sessions",
        "/v1/sessions/{session_id}/approvals/{approval_id}",
        "/v1/triggers/{name}",
        "/v1/agents/{name}/run",
    ]
    for path in keyed:
        params = [p for p in paths[path]["post"]["parameters"] if p["name"] == "Idempotency-Key"]
        assert len(params) == 1 and params[0]["in"] == "header", path
        assert json.dumps(KEY_PATTERN) in json.dumps(params[0]["schema"])
