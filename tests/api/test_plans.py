"""`/v1/sessions/{id}/plans`: a planner's plans listed, rejected, revised, with clear errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from keel.client import AsyncKeel, Conflict
from keel.formation import Formation
from keel.plans import Plan
from tests.api.live import read_events
from tests.workflows.test_planner import A, B, C, plan_message, planner_formation


@pytest.fixture
def formation() -> Formation:
    return planner_formation(plans={"min_steps": 2})


async def _proposed(api: httpx.AsyncClient, session_id: str, attempt: int) -> dict[str, Any]:
    for _ in range(300):
        listed = (await api.get(f"/v1/sessions/{session_id}/plans")).json()
        for plan in listed["plans"]:
            if plan["status"] == "proposed" and plan["attempt"] == attempt:
                return plan
        await asyncio.sleep(0.05)
    raise AssertionError("no plan was proposed")


async def _ended(api: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(300):
        turn = (await api.get(url)).json()
        if turn["status"] in ("completed", "failed"):
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError("the turn did not end")


async def test_a_plan_is_rejected_with_feedback_then_revised_over_http(
    api: httpx.AsyncClient,
) -> None:
    accepted = (
        await api.post(
            "/v1/chat",
            json={"message": plan_message(A, B, C), "agent": "lead", "mode": "async"},
        )
    ).json()
    session_id = accepted["session_id"]
    first = await _proposed(api, session_id, 1)
    assert [s["id"] for s in first["steps"]] == ["a", "b", "c"]
    assert first["expires_at"] is not None
    assert (await api.get(accepted["url"])).json()["status"] == "awaiting_approval"

    url = f"/v1/sessions/{session_id}/plans"
    feedback = "fewer steps " + plan_message(A, B)
    rejected = await api.post(
        f"{url}/{first['plan_id']}", json={"decision": "reject", "feedback": feedback}
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    again = await api.post(f"{url}/{first['plan_id']}", json={"decision": "approve"})
    assert again.status_code == 409 and again.json()["type"].endswith("plan-decided")

    second = await _proposed(api, session_id, 2)
    assert [s["id"] for s in second["steps"]] == ["a", "b"]
    cycle = [
        {"id": "x", "description": "x", "agent": "writer", "depends_on": ["y"]},
        {"id": "y", "description": "y", "agent": "writer", "depends_on": ["x"]},
    ]
    refused = await api.post(
        f"{url}/{second['plan_id']}", json={"decision": "revise", "steps": cycle}
    )
    assert refused.status_code == 422 and refused.json()["type"].endswith("invalid-plan")
    assert "cycle" in refused.json()["detail"]
    no_steps = await api.post(f"{url}/{second['plan_id']}", json={"decision": "revise"})
    assert no_steps.status_code == 422
    steps = [{"id": "w", "description": "write [[say written]]", "agent": "writer"}]
    revised = await api.post(
        f"{url}/{second['plan_id']}",
        json={"decision": "revise", "steps": steps},
    )
    assert revised.status_code == 200, revised.text
    assert [s["id"] for s in revised.json()["steps"]] == ["w"]

    turn = await _ended(api, accepted["url"])
    assert turn["status"] == "completed"
    assert "Step w (writer): written" in turn["message"]["content"]
    listed = (await api.get(url)).json()["plans"]
    assert [(p["status"], p["decision"]) for p in listed] == [
        ("rejected", "reject"),
        ("completed", "revise"),
    ]
    events = [
        e.json()
        for e in await read_events(
            api, "GET", f"/v1/sessions/{session_id}/events?turn_id={accepted['turn_id']}"
        )
    ]
    kinds = [e["type"] for e in events if e["type"].startswith("plan.")]
    assert kinds == [
        "plan.proposed",
        "plan.decided",
        "plan.proposed",
        "plan.decided",
        "plan.step.started",
        "plan.step.completed",
        "plan.completed",
    ]
    decided = [e for e in events if e["type"] == "plan.decided"]
    assert [d["decision"] for d in decided] == ["reject", "revise"]
    assert decided[0]["feedback"] == feedback


async def test_unknown_plans_and_sessions_answer_404(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/sessions", json={"agent": "lead"})).json()
    listed = await api.get(f"/v1/sessions/{created['id']}/plans")
    assert listed.status_code == 200 and listed.json() == {"plans": []}
    unknown = await api.post(
        f"/v1/sessions/{created['id']}/plans/nope", json={"decision": "approve"}
    )
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("plan-not-found")
    missing = await api.get("/v1/sessions/nosuchsession/plans")
    assert missing.status_code == 404


async def test_the_client_lists_and_decides_plans(api: httpx.AsyncClient) -> None:
    async with AsyncKeel(str(api.base_url), http_client=api) as keel:
        waiting = await keel.chat(plan_message(A, B), agent="lead", wait_s=0.5)
        assert waiting.status == "awaiting_approval"
        [plan] = await _eventually_listed(keel, waiting.session_id)
        steps = [{"id": "w", "description": "write [[say written]]", "agent": "writer"}]
        decided = await keel.plans.decide(
            waiting.session_id, plan.plan_id, "revise", steps=steps, reviewer="ann"
        )
        assert (decided.status, decided.reviewer, [s.id for s in decided.steps]) == (
            "running",
            "ann",
            ["w"],
        )
        with pytest.raises(Conflict) as refused:
            await keel.plans.decide(waiting.session_id, plan.plan_id, "approve")
        assert refused.value.type.endswith("plan-decided")


async def _eventually_listed(keel: AsyncKeel, session_id: str) -> list[Plan]:
    for _ in range(300):
        if plans := await keel.plans.list(session_id):
            return plans
        await asyncio.sleep(0.05)
    raise AssertionError("no plan was listed")
