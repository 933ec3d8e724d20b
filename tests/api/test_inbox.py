"""`GET /v1/approvals`: the pending approvals across the caller's sessions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from keel.formation import Formation
from keel.settings import Settings
from tests.formations import gated_lookup


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A tenant of this test alone: the inbox of the whole tenant holds only its sessions."""
    return settings.model_copy(update={"tenant": f"inbox-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
def formation() -> Formation:
    return gated_lookup()


async def _ask(api: httpx.AsyncClient, user: str, n: int) -> str:
    body = {"message": f'[[call lookup {{"id": {n}}}]]', "mode": "async"}
    accepted = await api.post("/v1/chat", json=body, headers={"X-User-Id": user})
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["session_id"])


async def _inbox(
    api: httpx.AsyncClient, want: int, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    """The inbox once it lists `want` approvals (visibility lags writes by a moment)."""
    page: dict[str, Any] = {}
    for _ in range(100):
        response = await api.get("/v1/approvals", params=params, headers=headers or {})
        assert response.status_code == 200, response.text
        page = response.json()
        if len(page["approvals"]) == want:
            return page
        await asyncio.sleep(0.1)
    raise AssertionError(f"the inbox never held {want}: {page}")


async def test_the_inbox_lists_pending_approvals_of_the_callers_sessions(
    api: httpx.AsyncClient,
) -> None:
    ann = await _ask(api, "inbox-ann", 1)
    bob = await _ask(api, "inbox-bob", 2)

    everyone = await _inbox(api, 2)
    assert {a["session_id"] for a in everyone["approvals"]} == {ann, bob}
    first = everyone["approvals"][0]
    assert set(first) >= {
        "id",
        "turn_id",
        "call_id",
        "tool",
        "arguments",
        "status",
        "requested_at",
        "expires_at",
        "decision",
        "reviewer",
        "session_id",
        "agent",
        "user_id",
    }
    assert [a["requested_at"] for a in everyone["approvals"]] == sorted(
        (a["requested_at"] for a in everyone["approvals"]), reverse=True
    )
    assert everyone["next_page_token"] is None

    anns = await _inbox(api, 1, headers={"X-User-Id": "inbox-ann"})
    [mine] = anns["approvals"]
    assert (mine["session_id"], mine["user_id"], mine["agent"]) == (ann, "inbox-ann", "assistant")
    assert (mine["tool"], mine["arguments"], mine["status"]) == ("lookup", {"id": 1}, "pending")

    # Pages of sessions, with a token signed for this caller's query.
    one = await _inbox(api, 1, limit=1)
    assert one["next_page_token"]
    rest = await _inbox(api, 1, limit=1, page_token=one["next_page_token"])
    assert {one["approvals"][0]["session_id"], rest["approvals"][0]["session_id"]} == {ann, bob}
    foreign = await api.get(
        "/v1/approvals",
        params={"limit": 1, "page_token": one["next_page_token"]},
        headers={"X-User-Id": "inbox-ann"},
    )
    assert foreign.status_code == 404 and foreign.json()["type"] == "/problems/page-not-found"

    # Decided: it leaves the inbox.
    url = f"/v1/sessions/{ann}/approvals/{mine['id']}"
    assert (await api.post(url, json={"decision": "approve"})).status_code == 200
    await _inbox(api, 0, headers={"X-User-Id": "inbox-ann"})
    left = await _inbox(api, 1)
    assert [a["session_id"] for a in left["approvals"]] == [bob]
