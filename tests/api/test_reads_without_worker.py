"""Reads of a session answer from Temporal and the store when no worker is up."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from api import create_app
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.procs import WORKER_READY, worker_process, write_formation

READ_LIMIT_S = 2.0
"""The contract (docs/api.md): every read answers within this, worker or not."""
GATED = '[[call lookup {"invoice": 7}]]'


async def test_every_read_answers_within_two_seconds_with_the_worker_killed(
    client: Client, settings: Settings, store: TranscriptStore, tmp_path: Path
) -> None:
    path, formation = write_formation(
        tmp_path,
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
        },
    )
    worker = worker_process(tmp_path, settings, path)
    await worker.start(ready=WORKER_READY)
    app = create_app(settings, formation, client=client, store=store)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://keel", timeout=30
        ) as http:
            done = (await http.post("/v1/chat", json={"message": "hello"})).json()
            session = done["session_id"]
            # The memo mirrors the first turn; only the store knows of the second.
            again = (
                await http.post("/v1/chat", json={"session_id": session, "message": "again"})
            ).json()
            waiting = await _send(http, session, GATED)
            [approval] = await _pending(http, session)
            queued = await _send(http, session, "after the approval")
            worker.kill()
            base = f"/v1/sessions/{session}"
            reads = {
                "session": base,
                "completed turn": f"{base}/turns/{done['turn_id']}",
                "stored turn": f"{base}/turns/{again['turn_id']}",
                "waiting turn": f"{base}/turns/{waiting}",
                "queued turn": f"{base}/turns/{queued}",
                "approvals": f"{base}/approvals",
            }
            timed = {name: await _timed_get(http, url) for name, url in reads.items()}
    finally:
        worker.stop()
    seconds = {name: round(elapsed, 3) for name, (elapsed, _) in timed.items()}
    assert max(seconds.values()) < READ_LIMIT_S, seconds
    answers = {name: body for name, (_, body) in timed.items()}
    assert [m["content"] for m in answers["session"]["messages"]] == [
        "hello",
        "echo: hello",
        "again",
        "echo: again",
        GATED,
        "",
    ]
    assert [a["id"] for a in answers["session"]["pending_approvals"]] == [approval["id"]]
    # Every model call's tokens, the waiting turn's too: each answer in the store has its own.
    answered = [m["usage"] for m in answers["session"]["messages"] if m["role"] == "assistant"]
    assert answered[:2] == [done["usage"], again["usage"]]
    assert answers["session"]["usage"] == {
        "prompt_tokens": sum(usage["prompt_tokens"] for usage in answered),
        "completion_tokens": sum(usage["completion_tokens"] for usage in answered),
        "cost_usd": 0.0,  # the default formation prices nothing
        "estimated": True,  # echo's counts are estimates
    }
    for turn, sent in (("completed turn", done), ("stored turn", again)):
        assert {k: answers[turn][k] for k in ("status", "message", "usage")} == {
            k: sent[k] for k in ("status", "message", "usage")
        }
    assert answers["waiting turn"]["status"] == "awaiting_approval"
    assert answers["queued turn"]["status"] == "queued"
    assert answers["approvals"]["approvals"] == [approval]


async def _send(http: httpx.AsyncClient, session: str, text: str) -> str:
    sent = await http.post(
        "/v1/chat", json={"session_id": session, "message": text, "mode": "async"}
    )
    assert sent.status_code == 202, sent.text
    return str(sent.json()["turn_id"])


async def _pending(http: httpx.AsyncClient, session: str) -> list[dict[str, Any]]:
    for _ in range(100):
        approvals = (await http.get(f"/v1/sessions/{session}/approvals")).json()["approvals"]
        if approvals:
            return list(approvals)
        await asyncio.sleep(0.05)
    raise AssertionError("no approval was requested")


async def _timed_get(http: httpx.AsyncClient, url: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await http.get(url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed, response.json()


async def test_a_planners_plans_are_read_with_the_worker_killed(
    client: Client, settings: Settings, store: TranscriptStore, tmp_path: Path
) -> None:
    path, formation = write_formation(
        tmp_path,
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "lead", "role": "planner"}, {"name": "writer"}],
            "approvals": {"plans": "always"},
        },
    )
    step = {"id": "w", "description": "write", "agent": "writer"}
    message = '[[json {"goal": "g", "steps": [' + json.dumps(step) + "]}]]"
    worker = worker_process(tmp_path, settings, path)
    await worker.start(ready=WORKER_READY)
    app = create_app(settings, formation, client=client, store=store)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://keel", timeout=30
        ) as http:
            sent = await http.post(
                "/v1/chat", json={"message": message, "agent": "lead", "mode": "async"}
            )
            session, turn_id = sent.json()["session_id"], sent.json()["turn_id"]
            base = f"/v1/sessions/{session}"
            for _ in range(100):
                if (await http.get(f"{base}/plans")).json()["plans"]:
                    break
                await asyncio.sleep(0.05)
            worker.kill()
            plans = await _timed_get(http, f"{base}/plans")
            turn = await _timed_get(http, f"{base}/turns/{turn_id}")
    finally:
        worker.stop()
    assert max(plans[0], turn[0]) < READ_LIMIT_S
    [plan] = plans[1]["plans"]
    assert (plan["status"], [s["id"] for s in plan["steps"]]) == ("proposed", ["w"])
    assert turn[1]["status"] == "awaiting_approval"
