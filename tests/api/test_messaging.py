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
