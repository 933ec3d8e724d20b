"""One user's key cannot reach another user's session through any route: 404, never 403."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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

CLIENT = "isolation-client-0123456789abcdef"
ANN = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "ann"}
BOB = {"Authorization": f"Bearer {CLIENT}", "X-User-Id": "bob"}


@pytest.fixture
def formation() -> Formation:
    return gated_lookup()


@pytest.fixture
async def api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"client_keys": CLIENT})
    app = create_app(settings, formation, client=client, store=store)
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http


async def _ann_waiting_for_approval(api: httpx.AsyncClient) -> tuple[str, str]:
    """A session of Ann's whose turn waits for an approval: its id and the approval's."""
    accepted = await api.post(
        "/v1/chat",
        json={"message": '[[call lookup {"invoice": 7}]]', "mode": "async"},
        headers=ANN,
    )
    assert accepted.status_code == 202, accepted.text
    session = accepted.json()["session_id"]
    for _ in range(200):
        pending = (await api.get(f"/v1/sessions/{session}/approvals", headers=ANN)).json()
        if pending["approvals"]:
            return session, pending["approvals"][0]["id"]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def test_bob_cannot_reach_anns_session_by_any_route(api: httpx.AsyncClient) -> None:
    session, approval = await _ann_waiting_for_approval(api)
    base = f"/v1/sessions/{session}"
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", base, None),
        ("GET", f"{base}/approvals", None),
        ("POST", f"{base}/approvals/{approval}", {"decision": "approve"}),
        ("GET", f"{base}/events", None),
        ("POST", "/v1/chat", {"message": "hi", "session_id": session}),
        ("POST", f"{base}/fork", {}),
        ("DELETE", base, None),
    ]
    for method, url, body in attempts:
        response = await api.request(method, url, json=body, headers=BOB)
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # Ann's session is untouched: her approval is still hers to give.
    decided = await api.post(
        f"{base}/approvals/{approval}", json={"decision": "approve"}, headers=ANN
    )
    assert decided.status_code == 200, decided.text


async def test_bob_cannot_forget_ann_or_list_her_memories(api: httpx.AsyncClient) -> None:
    forget = await api.post("/v1/memory/forget", json={"user_id": "ann"}, headers=BOB)
    assert forget.status_code == 403
    listed = await api.get("/v1/memory", params={"user_id": "ann"}, headers=BOB)
    assert listed.status_code == 200 and listed.json()["memories"] == []


async def test_oversized_revised_arguments_are_refused(api: httpx.AsyncClient) -> None:
    session, approval = await _ann_waiting_for_approval(api)
    huge = {"invoice": 7, "note": "x" * 70_000}
    response = await api.post(
        f"/v1/sessions/{session}/approvals/{approval}",
        json={"decision": "revise", "arguments": huge},
        headers=ANN,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    await api.post(
        f"/v1/sessions/{session}/approvals/{approval}", json={"decision": "approve"}, headers=ANN
    )


async def test_the_approvals_inbox_of_a_client_key_holds_its_users_alone(
    api: httpx.AsyncClient,
) -> None:
    session, approval = await _ann_waiting_for_approval(api)
    for _ in range(100):
        anns = (await api.get("/v1/approvals", headers=ANN)).json()["approvals"]
        if any(a["session_id"] == session for a in anns):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("Ann's approval never reached her inbox")
    assert {a["user_id"] for a in anns} == {"ann"}
    bobs = (await api.get("/v1/approvals", headers=BOB)).json()["approvals"]
    assert all(a["user_id"] == "bob" for a in bobs)
    assert session not in {a["session_id"] for a in bobs}
    await api.post(
        f"/v1/sessions/{session}/approvals/{approval}", json={"decision": "approve"}, headers=ANN
    )
