"""`/v1/sessions`, `/v1/agents`, `/health` and `/metrics`."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx

from keel.store import MAX_SEQ


async def _list(api: httpx.AsyncClient, want: int, **params: Any) -> list[dict[str, Any]]:
    """List sessions, waiting out visibility's short lag."""
    sessions: list[dict[str, Any]] = []
    for _ in range(50):
        sessions = (await api.get("/v1/sessions", params=params)).json()["sessions"]
        if len(sessions) >= want:
            break
        await asyncio.sleep(0.1)
    return sessions


async def test_create_get_list_and_close(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/sessions", json={"user_id": "bea", "metadata": {"ticket": 7}})
    assert created.status_code == 201
    session = created.json()
    assert created.headers["location"] == f"/v1/sessions/{session['id']}"
    assert session["status"] == "active" and session["run_id"]
    assert set(session) >= {
        "id",
        "agent",
        "user_id",
        "status",
        "created_at",
        "workflow_id",
        "run_id",
        "temporal_ui_url",
    }

    fetched = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert fetched["metadata"] == {"ticket": 7}
    assert fetched["messages"] == [] and fetched["pending_approvals"] == []

    listed = await _list(api, 1, user_id="bea")
    assert [s["id"] for s in listed] == [session["id"]]
    assert await _list(api, 1, user_id="nobody-at-all") == []

    await api.delete(f"/v1/sessions/{session['id']}")
    for _ in range(50):
        closed = await _list(api, 1, user_id="bea", status="closed")
        if closed:
            break
    assert [s["status"] for s in closed] == ["closed"]


async def test_a_user_header_scopes_what_the_caller_sees(api: httpx.AsyncClient) -> None:
    mine = (await api.post("/v1/sessions", json={}, headers={"X-User-Id": "cy"})).json()
    assert mine["user_id"] == "cy"
    other = await api.get(f"/v1/sessions/{mine['id']}", headers={"X-User-Id": "dee"})
    assert other.status_code == 404


async def test_pagination_hands_out_a_token(api: httpx.AsyncClient) -> None:
    for _ in range(3):
        await api.post("/v1/sessions", json={"user_id": "pager"})
    await _list(api, 3, user_id="pager")
    page = (await api.get("/v1/sessions", params={"user_id": "pager", "limit": 2})).json()
    assert len(page["sessions"]) == 2 and page["next_page_token"]
    rest = (
        await api.get(
            "/v1/sessions",
            params={"user_id": "pager", "limit": 2, "page_token": page["next_page_token"]},
        )
    ).json()
    assert len(rest["sessions"]) == 1
    bad = await api.get("/v1/sessions", params={"page_token": "!!"})
    assert bad.status_code == 422
    # Well formed, but not issued for this query (nor at all): it names no page.
    for token in (page["next_page_token"], base64.urlsafe_b64encode(b"x" * 40).decode()):
        foreign = await api.get("/v1/sessions", params={"user_id": "other", "page_token": token})
        assert foreign.status_code == 404, foreign.text
        assert foreign.json()["type"] == "/problems/page-not-found"


async def test_a_sequence_number_past_any_the_store_holds_is_a_422(
    api: httpx.AsyncClient,
) -> None:
    session = (await api.post("/v1/sessions", json={})).json()
    url = f"/v1/sessions/{session['id']}"
    assert (await api.get(url, params={"after_seq": MAX_SEQ})).status_code == 200
    for after_seq in (MAX_SEQ + 1, 2459128474000696541184):
        answer = await api.get(url, params={"after_seq": after_seq})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


async def test_unknown_session_is_a_404_problem(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get("/v1/sessions/nope"),
        await api.delete("/v1/sessions/nope"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_agents(api: httpx.AsyncClient) -> None:
    agents = (await api.get("/v1/agents")).json()["agents"]
    assert [a["name"] for a in agents] == ["assistant"]
    assert (await api.get("/v1/agents/assistant")).json()["model"] == "default"
    assert (await api.get("/v1/agents/nobody")).status_code == 404


async def test_health_reports_temporal_and_pollers(api: httpx.AsyncClient) -> None:
    await api.get("/v1/agents")
    for _ in range(50):  # a worker that just started registers its pollers on first poll
        health = await api.get("/health")
        pollers = {q: v["pollers"] for q, v in health.json()["temporal"]["task_queues"].items()}
        if pollers and all(count > 0 for count in pollers.values()):
            break
        await asyncio.sleep(0.1)
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["temporal"]["reachable"] is True
    assert body["requests"] >= 1 and body["uptime_s"] > 0
    assert body["memory"]["rss_bytes"] > 0 and "percent" in body["cpu"]
    assert pollers and all(count > 0 for count in pollers.values()), pollers


async def test_metrics_and_openapi(api: httpx.AsyncClient) -> None:
    await api.get("/v1/agents")
    metrics = await api.get("/metrics")
    assert "keel_http_requests_total" in metrics.text
    spec = (await api.get("/openapi.json")).json()
    assert "/v1/chat" in spec["paths"] and "/v1/sessions/{session_id}" in spec["paths"]
