"""`/v1/memory`: list and delete a user's memories, and forget a user entirely."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation, formation_from_data
from keel.memory import MemoryScope, VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers


@pytest.fixture
def memory_formation() -> Formation:
    return formation_from_data(
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant"}],
            "memory": {"vector": {"enabled": True}},
        },
        env={},
    )


@pytest.fixture
async def api(
    client: Client,
    settings: Settings,
    memory_formation: Formation,
    store: TranscriptStore,
    vector_memory: VectorMemory,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings, memory_formation, client=client, store=store, vector_memory=vector_memory
    )
    async with (
        running_workers(client, settings, memory_formation, store, vector_memory=vector_memory),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http


async def _chat(api: httpx.AsyncClient, user: str, message: str) -> dict[str, str]:
    response = await api.post("/v1/chat", json={"message": message, "user_id": user})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def _memories(api: httpx.AsyncClient, user: str, want: int) -> list[dict[str, str]]:
    """The user's memories, waiting for `want` of them: a sync answer precedes its write."""
    memories: list[dict[str, str]] = []
    for _ in range(50):
        memories = (await api.get("/v1/memory", params={"user_id": user})).json()["memories"]
        if len(memories) >= want:
            break
        await asyncio.sleep(0.1)
    return memories


async def test_list_and_delete_memories(api: httpx.AsyncClient) -> None:
    await _chat(api, "dee", '[[call remember {"fact": "Dee prefers tea."}]] [[say ok]]')
    listed = await _memories(api, "dee", 2)
    assert sorted(m["kind"] for m in listed) == ["exchange", "fact"]
    fact = next(m for m in listed if m["kind"] == "fact")
    assert fact["text"] == "Dee prefers tea." and fact["user_id"] == "dee"

    other = await api.delete(f"/v1/memory/{fact['id']}", headers={"X-User-Id": "eve"})
    assert other.status_code == 404
    assert (await api.delete(f"/v1/memory/{fact['id']}")).status_code == 204
    assert (await api.delete(f"/v1/memory/{fact['id']}")).status_code == 404
    assert (await api.delete("/v1/memory/not-a-uuid")).status_code == 404
    left = (await api.get("/v1/memory", headers={"X-User-Id": "dee"})).json()["memories"]
    assert [m["kind"] for m in left] == ["exchange"]
    assert (await api.get("/v1/memory", headers={"X-User-Id": "eve"})).json()["memories"] == []
    # Without a user named anywhere, the caller's own: dev mode's `anonymous` has none.
    anonymous = await api.get("/v1/memory")
    assert (anonymous.status_code, anonymous.json()["memories"]) == (200, [])


async def test_forget_leaves_nothing_of_the_user_behind(
    api: httpx.AsyncClient, store: TranscriptStore, vector_memory: VectorMemory
) -> None:
    done = await _chat(api, "fay", '[[call remember {"fact": "Fay lives in Oslo."}]] [[say ok]]')
    await _chat(api, "fay", "a second session")
    kept = await _chat(api, "gus", "gus stays")
    idle = (await api.post("/v1/sessions", json={"user_id": "fay"})).json()
    assert len(await _memories(api, "fay", 3)) == 3
    for _ in range(50):  # visibility lists a new session after a moment
        listed = await api.get("/v1/sessions", params={"user_id": "fay", "status": "active"})
        if len(listed.json()["sessions"]) == 3:
            break
        await asyncio.sleep(0.1)

    refused = await api.post(
        "/v1/memory/forget", json={"user_id": "fay"}, headers={"X-User-Id": "gus"}
    )
    assert refused.status_code == 403
    forgot = await api.post("/v1/memory/forget", json={"user_id": "fay"})
    assert forgot.status_code == 200, forgot.text
    result = forgot.json()
    assert result["memories_deleted"] == 3 and result["sessions_terminated"] == 3

    assert await store.user_sessions("default", "fay") == []
    assert await store.messages(f"keel/default/{done['session_id']}") == []
    fay = MemoryScope(tenant="default", user_id="fay", formation="default")
    assert await vector_memory.list(fay) == ([], None)
    assert (await api.get(f"/v1/sessions/{idle['id']}")).json()["status"] == "closed"
    # Someone else's data is untouched.
    assert len(await store.messages(f"keel/default/{kept['session_id']}")) == 2
    gus = MemoryScope(tenant="default", user_id="gus", formation="default")
    assert len((await vector_memory.list(gus))[0]) == 1
    again = await api.post("/v1/memory/forget", json={"user_id": "fay"})
    assert again.json()["memories_deleted"] == 0
