"""`/v1/chat` and turns: sync and async modes, errors as problem+json."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from keel.formation import Formation, formation_from_data


async def test_sync_chat_answers_and_the_session_keeps_the_messages(api: httpx.AsyncClient) -> None:
    first = await api.post("/v1/chat", json={"message": "hello"}, headers={"X-User-Id": "ann"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "completed"
    assert body["message"] == {"role": "assistant", "content": "echo: hello"}
    assert body["usage"]["completion_tokens"] > 0

    again = await api.post("/v1/chat", json={"message": "more", "session_id": body["session_id"]})
    assert again.json()["message"]["content"] == "echo: more"

    session = (await api.get(f"/v1/sessions/{body['session_id']}")).json()
    assert session["user_id"] == "ann" and session["agent"] == "assistant"
    assert session["workflow_id"] == f"keel/default/{body['session_id']}"
    assert "keel%2Fdefault%2F" in session["temporal_ui_url"]
    assert [(m["role"], m["content"]) for m in session["messages"]] == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
        ("user", "more"),
        ("assistant", "echo: more"),
    ]


async def test_async_chat_answers_202_and_the_turn_can_be_polled(api: httpx.AsyncClient) -> None:
    accepted = await api.post("/v1/chat", json={"message": "later", "mode": "async"})
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "queued" and accepted.headers["location"] == body["url"]
    turn: dict[str, Any] = {}
    for _ in range(100):
        turn = (await api.get(body["url"])).json()
        if turn["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert turn["message"]["content"] == "echo: later"


async def test_a_turn_of_another_session_is_not_found(api: httpx.AsyncClient) -> None:
    body = (await api.post("/v1/chat", json={"message": "hi"})).json()
    missing = await api.get(f"/v1/sessions/{body['session_id']}/turns/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "body.message"),
        ({"message": ""}, "body.message"),
        ({"message": 42}, "body.message"),
        ({"message": "hi", "mode": "later"}, "body.mode"),
        ({"message": "hi", "session_id": "../../etc"}, "body.session_id"),
    ],
)
async def test_bad_bodies_get_422_naming_the_field(
    api: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/chat", json=payload)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 422 and field in problem["detail"]


async def test_a_message_over_the_formation_limit_gets_422(
    api: httpx.AsyncClient, formation: Formation
) -> None:
    limit = formation.sessions.max_message_chars
    response = await api.post("/v1/chat", json={"message": "x" * (limit + 1)})
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/message-too-long"


async def test_chat_with_an_unknown_session_or_agent_gets_404(api: httpx.AsyncClient) -> None:
    session = await api.post("/v1/chat", json={"message": "hi", "session_id": "missing"})
    assert session.status_code == 404
    agent = await api.post("/v1/chat", json={"message": "hi", "agent": "nobody"})
    assert agent.status_code == 404
    assert agent.json()["type"] == "/problems/agent-not-found"


async def test_chat_in_a_closed_session_gets_409(api: httpx.AsyncClient) -> None:
    body = (await api.post("/v1/chat", json={"message": "hi"})).json()
    closed = await api.delete(f"/v1/sessions/{body['session_id']}")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    late = await api.post("/v1/chat", json={"message": "hi", "session_id": body["session_id"]})
    assert late.status_code == 409
    assert late.json()["type"] == "/problems/session-closed"
    again = await api.delete(f"/v1/sessions/{body['session_id']}")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "formation",
    [
        formation_from_data(
            {
                "models": {"default": {"provider": "scripted"}},
                "agents": [{"name": "assistant"}],
                "sessions": {"max_queued_turns": 1},
            },
            env={},
        )
    ],
)
async def test_a_message_for_a_full_queue_gets_429_session_queue_full(
    api: httpx.AsyncClient,
) -> None:
    first = await api.post("/v1/chat", json={"message": "slow [[sleep 1]]", "mode": "async"})
    session = first.json()["session_id"]
    for _ in range(50):  # the first message becomes the running turn, leaving the queue empty
        if (await api.get(f"/v1/sessions/{session}/turns/{first.json()['turn_id']}")).json()[
            "status"
        ] == "running":
            break
        await asyncio.sleep(0.02)
    queued = await api.post(
        "/v1/chat", json={"message": "next", "session_id": session, "mode": "async"}
    )
    assert queued.status_code == 202
    full = await api.post("/v1/chat", json={"message": "one more", "session_id": session})
    assert full.status_code == 429
    assert full.json()["type"] == "/problems/session-queue-full"
    assert int(full.headers["Retry-After"]) > 0
