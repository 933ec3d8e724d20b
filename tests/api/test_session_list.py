"""`GET /v1/sessions` items: pending approval counts and last activity, cheaply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.formations import gated_lookup


@pytest.fixture
def formation() -> Formation:
    return gated_lookup()


class CountingStore:
    """The real store, counting the calls the API makes of it."""

    def __init__(self, store: TranscriptStore) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return found(*args, **kwargs)

        return call


@pytest.fixture
async def counted(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingStore]]:
    counting = CountingStore(store)
    app = create_app(settings, formation, client=client, store=counting)  # type: ignore[arg-type]
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http, counting


async def _eventually(
    api: httpx.AsyncClient, params: dict[str, Any], ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """List sessions until `ready` says so (visibility lags writes by a moment)."""
    sessions: list[dict[str, Any]] = []
    for _ in range(100):
        sessions = (await api.get("/v1/sessions", params=params)).json()["sessions"]
        if ready(sessions):
            return sessions
        await asyncio.sleep(0.1)
    raise AssertionError(f"the list never got there: {sessions}")


async def test_items_carry_pending_approvals_and_last_activity(
    counted: tuple[httpx.AsyncClient, CountingStore],
) -> None:
    api, store = counted
    headers = {"X-User-Id": "lister"}
    idle = (await api.post("/v1/sessions", json={}, headers=headers)).json()
    chatted = (await api.post("/v1/chat", json={"message": "hi"}, headers=headers)).json()
    waiting = (
        await api.post(
            "/v1/chat",
            json={"message": '[[call lookup {"id": 1}]]', "mode": "async"},
            headers=headers,
        )
    ).json()

    def ready(sessions: list[dict[str, Any]]) -> bool:
        by_id = {s["id"]: s for s in sessions}
        return len(by_id) == 3 and by_id[waiting["session_id"]]["pending_approval_count"] == 1

    by_id = {s["id"]: s for s in await _eventually(api, {"user_id": "lister"}, ready)}
    assert by_id[idle["id"]]["pending_approval_count"] == 0
    assert by_id[idle["id"]]["last_activity_at"] is None
    assert by_id[chatted["session_id"]]["pending_approval_count"] == 0
    assert by_id[chatted["session_id"]]["last_activity_at"] is not None
    assert by_id[waiting["session_id"]]["last_activity_at"] is not None

    store.calls.clear()
    page = await api.get("/v1/sessions", params={"user_id": "lister", "limit": 50})
    assert page.status_code == 200
    assert store.calls == ["last_activity"]  # one store call for the whole page

    # Decided: the count goes back to 0; the filters still apply.
    approvals = (await api.get(f"/v1/sessions/{waiting['session_id']}/approvals")).json()
    url = f"/v1/sessions/{waiting['session_id']}/approvals/{approvals['approvals'][0]['id']}"
    assert (await api.post(url, json={"decision": "approve"})).status_code == 200

    def settled(sessions: list[dict[str, Any]]) -> bool:
        return [s["pending_approval_count"] for s in sessions] == [0]

    only = await _eventually(
        api, {"user_id": "lister", "agent": "assistant", "status": "active", "limit": 1}, settled
    )
    assert set(only[0]) >= {"pending_approval_count", "last_activity_at", "temporal_ui_url"}
