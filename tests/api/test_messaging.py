"""Agents message other sessions: request/response, and topics that sessions subscribe to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from keel.formation import Formation, formation_from_data


@pytest.fixture
def formation() -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [
                {"name": "hub", "tools": ["ask_session", "publish"]},
                {"name": "listener"},
            ],
        },
        env={},
    )


def _call(tool: str, **arguments: str) -> str:
    return f"[[call {tool} {json.dumps(arguments)}]]"


async def _messages(api: httpx.AsyncClient, session_id: str, count: int) -> list[dict[str, Any]]:
    for _ in range(100):
        messages = (await api.get(f"/v1/sessions/{session_id}")).json()["messages"]
        if len(messages) >= count:
            return list(messages)
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session_id} has fewer than {count} messages")


async def test_an_agent_asks_another_session_and_gets_its_answer(api: httpx.AsyncClient) -> None:
    other = (await api.post("/v1/sessions", json={"agent": "listener"})).json()
    asked = await api.post(
        "/v1/chat",
        json={
            "agent": "hub",
            "message": _call("ask_session", session_id=other["id"], message="hi"),
        },
    )
    assert asked.json()["message"]["content"] == "tool results: ask_session -> echo: hi"
    assert [m["content"] for m in await _messages(api, other["id"], 2)] == ["hi", "echo: hi"]


async def test_a_topic_message_reaches_every_subscriber_once(api: httpx.AsyncClient) -> None:
    subscribers = [
        (await api.post("/v1/sessions", json={"agent": "listener", "topics": ["news"]})).json()
        for _ in range(2)
    ]
    for _ in range(50):  # visibility lags a little behind a new session
        listed = (await api.get("/v1/sessions", params={"agent": "listener"})).json()["sessions"]
        if {s["id"] for s in subscribers} <= {s["id"] for s in listed}:
            break
        await asyncio.sleep(0.1)
    published = await api.post(
        "/v1/chat", json={"agent": "hub", "message": _call("publish", topic="news", message="up")}
    )
    assert published.json()["message"]["content"] == (
        "tool results: publish -> published to 'news': 2 subscribers"
    )
    for subscriber in subscribers:
        messages = await _messages(api, subscriber["id"], 2)
        assert len(messages) == 2
        assert messages[0]["content"].endswith("] up")
        assert "message on topic 'news'" in messages[0]["content"]


async def _session(api: httpx.AsyncClient, agent: str, user: str | None) -> str:
    headers = {"X-User-Id": user} if user else {}
    created = await api.post("/v1/sessions", json={"agent": agent}, headers=headers)
    return str(created.json()["id"])


async def _ask(api: httpx.AsyncClient, asker: str, user: str | None, **arguments: str) -> str:
    headers = {"X-User-Id": user} if user else {}
    answer = await api.post(
        "/v1/chat",
        json={"session_id": asker, "message": _call("ask_session", **arguments)},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["message"]["content"])


async def test_a_session_asking_itself_hears_why_not_at_once(api: httpx.AsyncClient) -> None:
    hub = await _session(api, "hub", "ann")
    answer = await _ask(api, hub, "ann", session_id=hub, message="hi")
    assert answer == (
        f"tool results: ask_session -> cannot ask session {hub!r}:"
        " that is this session, so neither could go on"
    )


async def test_a_session_asked_back_by_the_session_asking_it_hears_why_not(
    api: httpx.AsyncClient,
) -> None:
    first, second = await _session(api, "hub", "ann"), await _session(api, "hub", "ann")
    ask_back = _call("ask_session", session_id=first, message="and you?")
    answer = await _ask(api, first, "ann", session_id=second, message=ask_back)
    assert answer == (
        "tool results: ask_session -> tool results: ask_session ->"
        f" cannot ask session {first!r}: it is waiting for this session, so neither could go on"
    )


async def test_ask_session_reaches_only_the_askers_user_unless_started_by_an_admin(
    api: httpx.AsyncClient,
) -> None:
    bobs = await _session(api, "listener", "bob")
    anns_hub = await _session(api, "hub", "ann")
    refused = await _ask(api, anns_hub, "ann", session_id=bobs, message="hi bob")
    assert refused == f"tool results: ask_session -> there is no session {bobs!r}"
    assert (await api.get(f"/v1/sessions/{bobs}")).json()["messages"] == []
    # A session started by a caller bound to no user (an admin key; dev mode here).
    admins_hub = await _session(api, "hub", None)
    answered = await _ask(api, admins_hub, None, session_id=bobs, message="hi bob")
    assert answered == "tool results: ask_session -> echo: hi bob"
