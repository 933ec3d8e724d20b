"""`/v1/sessions/{id}/approvals`: list and decide, with clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.api.live import read_events
from tests.conftest import running_workers
from tests.formations import gated_lookup


@pytest.fixture
def formation() -> Formation:
    return gated_lookup()


async def _waiting(api: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    accepted = (
        await api.post("/v1/chat", json={"message": '[[call lookup {"id": 1}]]', "mode": "async"})
    ).json()
    for _ in range(200):
        listed = (await api.get(f"/v1/sessions/{accepted['session_id']}/approvals")).json()
        if listed["approvals"]:
            return accepted, listed["approvals"][0]
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _events(api: httpx.AsyncClient, session_id: str, turn_id: str) -> list[dict[str, Any]]:
    """A turn's events, as the SSE stream sends them (it ends after the turn)."""
    url = f"/v1/sessions/{session_id}/events?turn_id={turn_id}"
    return [e.json() for e in await read_events(api, "GET", url)]


async def _turn(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(200):
        turn = (await api.get(url)).json()
        if turn["status"] in ("completed", "failed"):
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not finish")


async def test_a_pending_approval_is_listed_then_decided(api: httpx.AsyncClient) -> None:
    accepted, approval = await _waiting(api)
    assert set(approval) >= {"id", "tool", "arguments", "status", "requested_at", "expires_at"}
    assert (approval["tool"], approval["arguments"], approval["status"]) == (
        "lookup",
        {"id": 1},
        "pending",
    )
    turn = (await api.get(accepted["url"])).json()
    assert turn["status"] == "awaiting_approval"
    session = (await api.get(f"/v1/sessions/{accepted['session_id']}")).json()
    assert [a["id"] for a in session["pending_approvals"]] == [approval["id"]]

    url = f"/v1/sessions/{accepted['session_id']}/approvals/{approval['id']}"
    decided = await api.post(url, json={"decision": "reject", "feedback": "no", "reviewer": "ann"})
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    assert decided.json()["reviewer"] == "ann"
    again = await api.post(url, json={"decision": "approve", "reviewer": "bob"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    problem = again.json()
    assert problem["type"] == "/problems/approval-decided" and problem["status"] == 409
    assert {k: problem[k] for k in ("approval_status", "decision", "decided_by", "reviewer")} == {
        "approval_status": "rejected",
        "decision": "reject",
        "decided_by": "update",
        "reviewer": "ann",
    }
    assert (await _turn(api, accepted["url"]))["status"] == "completed"
    events = await _events(api, accepted["session_id"], accepted["turn_id"])
    decided_event = next(e for e in events if e["type"] == "approval.decided")
    assert decided_event["reviewer"] == "ann"
    started = next(e for e in events if e["type"] == "turn.started")
    session = (await api.get(f"/v1/sessions/{accepted['session_id']}")).json()
    assert started["run_id"] == session["run_id"]


async def test_the_reviewer_defaults_to_the_callers_user(api: httpx.AsyncClient) -> None:
    api.headers["X-User-Id"] = "carol"
    accepted, approval = await _waiting(api)
    url = f"/v1/sessions/{accepted['session_id']}/approvals/{approval['id']}"
    decided = await api.post(url, json={"decision": "approve"})
    assert decided.status_code == 200 and decided.json()["reviewer"] == "carol"
    too_long = await api.post(url, json={"decision": "approve", "reviewer": "x" * 129})
    assert too_long.status_code == 422
    await _turn(api, accepted["url"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"decision": "maybe"}, 422),
        ({"decision": "revise"}, 422),
        ({"decision": "approve", "arguments": {"invoice": 2}}, 422),
        ({"decision": "revise", "arguments": {"invoice": "seven"}}, 422),
        ({"decision": "revise", "arguments": {}}, 422),
    ],
)
async def test_bad_decisions_are_422(
    api: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    accepted, approval = await _waiting(api)
    url = f"/v1/sessions/{accepted['session_id']}/approvals/{approval['id']}"
    response = await api.post(url, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    await api.post(url, json={"decision": "approve"})


async def test_an_unknown_approval_is_404(api: httpx.AsyncClient) -> None:
    accepted, approval = await _waiting(api)
    base = f"/v1/sessions/{accepted['session_id']}/approvals"
    missing = await api.post(f"{base}/nope", json={"decision": "approve"})
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/approval-not-found"
    other_session = await api.post("/v1/sessions/nope/approvals/x", json={"decision": "approve"})
    assert other_session.status_code == 404
    await api.post(f"{base}/{approval['id']}", json={"decision": "approve"})


CLIENT_KEY = "approvals-client-0123456789abcdef"


@pytest.fixture
async def keyed_api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"client_keys": CLIENT_KEY})
    app = create_app(settings, formation, client=client, store=store)
    async with (
        running_workers(client, settings, formation, store),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://keel",
            headers={"Authorization": f"Bearer {CLIENT_KEY}", "X-User-Id": "ann"},
        ) as http,
    ):
        yield http


async def test_each_decision_records_who_when_and_what_in_listing_event_and_transcript(
    keyed_api: httpx.AsyncClient,
) -> None:
    api = keyed_api
    accepted, approval = await _waiting(api)
    session_id = accepted["session_id"]
    url = f"/v1/sessions/{session_id}/approvals/{approval['id']}"
    revised = {"decision": "revise", "arguments": {"invoice": 2}, "feedback": "use invoice 2"}
    assert (await api.post(url, json=revised)).status_code == 200
    await _turn(api, accepted["url"])

    listed = await api.get(f"/v1/sessions/{session_id}/approvals", params={"status": "decided"})
    assert listed.status_code == 200, listed.text
    [decided] = listed.json()["approvals"]
    key_name = decided["key_name"]
    assert key_name and key_name.startswith("client-") and CLIENT_KEY not in listed.text
    assert {k: decided[k] for k in ("id", "tool", "arguments", "status", "decided_by")} == {
        "id": approval["id"],
        "tool": "lookup",
        "arguments": {"id": 1},
        "status": "revised",
        "decided_by": "update",
    }
    assert (decided["reviewer"], decided["feedback"]) == ("ann", "use invoice 2")
    assert decided["revised_arguments"] == {"invoice": 2}
    decided_at = datetime.fromisoformat(decided["decided_at"])
    assert datetime.fromisoformat(approval["requested_at"]) <= decided_at
    pending = (await api.get(f"/v1/sessions/{session_id}/approvals")).json()
    assert pending["approvals"] == []

    [event] = [
        e
        for e in await _events(api, session_id, accepted["turn_id"])
        if e["type"] == "approval.decided"
    ]
    assert (event["reviewer"], event["key_name"]) == ("ann", key_name)
    assert datetime.fromisoformat(event["decided_at"]) == decided_at

    messages = (await api.get(f"/v1/sessions/{session_id}")).json()["messages"]
    [tool] = [m for m in messages if m["role"] == "tool"]
    assert tool["approval"]["id"] == approval["id"]
    assert tool["approval"]["key_name"] == key_name


async def test_an_unknown_approvals_status_is_a_422(api: httpx.AsyncClient) -> None:
    accepted = (await api.post("/v1/chat", json={"message": "hi"})).json()
    listed = await api.get(
        f"/v1/sessions/{accepted['session_id']}/approvals", params={"status": "maybe"}
    )
    assert listed.status_code == 422


async def test_the_metrics_count_sessions_awaiting_approval(api: httpx.AsyncClient) -> None:
    await _waiting(api)
    waiting = 0.0
    for _ in range(100):  # visibility catches up with the session's attribute
        scraped = (await api.get("/metrics")).text
        [line] = [
            x for x in scraped.splitlines() if x.startswith("keel_sessions_awaiting_approval ")
        ]
        waiting = float(line.split()[1])
        if waiting >= 1:
            break
        await asyncio.sleep(0.1)
    assert waiting >= 1
