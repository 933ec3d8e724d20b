"""`POST /v1/sessions/{id}/turns/{turn_id}/cancel` over a real port, with `keel worker` as a
process of its own: a streamed turn that ends `cancelled`, the refusals as problem+json, a
cancelled approval, a rollback, and reads of a cancelled turn once the worker is gone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from keel.settings import Settings
from keel.store import SqliteTranscriptStore
from tests.api.live import LiveApi, durable, live_api, read_events
from tests.procs import WORKER_READY, KeelProcess, worker_process, write_formation

ADMIN = "cancel-admin-0123456789abcdef"
CLIENT = "cancel-client-0123456789abcdef"
SLOW = "take your time [[sleep 30]]"
GATED = '[[call lookup {"invoice": 7}]]'
READ_LIMIT_S = 2.0


def auth(key: str = ADMIN, user: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **({"X-User-Id": user} if user else {})}


@dataclass
class Served:
    live: LiveApi
    worker: KeelProcess

    async def post(self, url: str, status: int, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("headers", auth())
        answer = await self.live.http.post(url, **kwargs)
        assert answer.status_code == status, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def get(self, url: str) -> dict[str, Any]:
        answer = await self.live.http.get(url, headers=auth())
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def turn_in(self, url: str, *statuses: str) -> dict[str, Any]:
        for _ in range(300):
            turn = await self.get(url)
            if turn["status"] in statuses:
                return turn
            await asyncio.sleep(0.1)
        raise AssertionError(f"{url} never reached {statuses}")


@pytest.fixture(scope="module")
async def served(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    data = tmp_path_factory.mktemp("turn-cancel")
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        data_dir=data,
        temporal_address=temporal_env.client.service_client.config.target_host,
        sessions_task_queue=f"cancel-sessions-{suffix}",
        activities_task_queue=f"cancel-activities-{suffix}",
        max_sessions_per_user=0,
        rate_limit_per_minute=0,
        admin_keys=ADMIN,
        client_keys=CLIENT,
    )
    path, formation = write_formation(
        data,
        {
            "models": {"default": {"provider": "scripted"}},
            "agents": [{"name": "assistant", "tools": ["lookup"]}],
            "python_tools": ["tests.fakes.tools"],
            "approvals": {"tools": {"lookup": "always"}},
        },
    )
    worker = worker_process(data, settings, path)
    await worker.start(ready=WORKER_READY)
    store = SqliteTranscriptStore(settings.resolved_data_dir / "keel.db")
    try:
        async with live_api(
            temporal_env.client, settings, formation, store, deltas=None, workers=False
        ) as live:
            yield Served(live, worker)
    finally:
        worker.stop()
        await store.close()


async def _session(served: Served) -> str:
    session: dict[str, Any] = await served.post("/v1/sessions", 201, json={})
    return str(session["id"])


async def test_a_cancelled_streamed_turn_ends_with_turn_cancelled(served: Served) -> None:
    session = await _session(served)
    body = {"message": SLOW, "session_id": session, "stream": True}
    stream = asyncio.create_task(
        read_events(
            served.live.http, "POST", "/v1/chat", json=body, headers=auth(), until="turn.cancelled"
        )
    )
    turns = await served.get(f"/v1/sessions/{session}")
    for _ in range(100):  # the turn's message is stored once its model call runs
        if turns["messages"]:
            break
        await asyncio.sleep(0.1)
        turns = await served.get(f"/v1/sessions/{session}")
    turn_id = turns["messages"][0]["turn_id"]
    url = f"/v1/sessions/{session}/turns/{turn_id}"

    asked = time.monotonic()
    answer = await served.live.http.post(f"{url}/cancel", headers=auth())
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == url
    assert answer.json() == {
        "session_id": session,
        "turn_id": turn_id,
        "status": "running",
        "url": url,
    }
    events = durable(await asyncio.wait_for(stream, 30))
    ended = time.monotonic() - asked
    print(f"\ncancel -> turn.cancelled on the stream (worker process): {ended:.2f} s")
    assert ended < 5
    assert [e.event for e in events] == ["turn.started", "turn.cancelled"]
    assert events[-1].json()["rolled_back"] is False
    assert (await served.get(url))["status"] == "cancelled"
    # The session goes on.
    again = await served.post("/v1/chat", 200, json={"message": "again", "session_id": session})
    assert again["message"]["content"] == "echo: again"


async def test_a_cancel_that_cannot_be_is_a_problem(served: Served) -> None:
    session = await _session(served)
    done = await served.post("/v1/chat", 200, json={"message": "hi", "session_id": session})
    base = f"/v1/sessions/{session}/turns"
    cases = [
        (f"{base}/no-such-turn/cancel", auth(), 404, "turn-not-found"),
        (f"{base}/{done['turn_id']}/cancel", auth(), 409, "turn-ended"),
        (
            f"{base}/{done['turn_id']}/cancel",
            auth(CLIENT, "someone-else"),
            404,
            "session-not-found",
        ),
        (f"/v1/sessions/{uuid.uuid4().hex}/turns/x/cancel", auth(), 404, "session-not-found"),
    ]
    for url, headers, status, slug in cases:
        answer = await served.live.http.post(url, headers=headers)
        assert answer.status_code == status, (url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == f"/problems/{slug}"
    bad = await served.live.http.post(
        f"{base}/{done['turn_id']}/cancel", headers=auth(), json={"rollback": "perhaps"}
    )
    assert bad.status_code == 422 and bad.json()["type"] == "/problems/invalid-request"
    await served.live.http.delete(f"/v1/sessions/{session}", headers=auth())
    closed = await served.live.http.post(f"{base}/{done['turn_id']}/cancel", headers=auth())
    assert closed.status_code == 409 and closed.json()["type"] == "/problems/session-closed"


async def test_a_rolled_back_turn_leaves_no_message_and_its_approval_refuses_a_decision(
    served: Served,
) -> None:
    session = await _session(served)
    first = await served.post("/v1/chat", 200, json={"message": "hello", "session_id": session})
    accepted = await served.post(
        "/v1/chat", 202, json={"message": GATED, "session_id": session, "mode": "async"}
    )
    await served.turn_in(accepted["url"], "awaiting_approval")
    [approval] = (await served.get(f"/v1/sessions/{session}/approvals"))["approvals"]
    await served.post(f"{accepted['url']}/cancel", 202, json={"rollback": True})
    assert (await served.turn_in(accepted["url"], "cancelled"))["message"] is None

    late = await served.live.http.post(
        f"/v1/sessions/{session}/approvals/{approval['id']}",
        headers=auth(),
        json={"decision": "approve"},
    )
    assert late.status_code == 409
    problem = late.json()
    assert problem["type"] == "/problems/approval-decided"
    assert (problem["approval_status"], problem["decided_by"]) == ("cancelled", "cancel")
    assert "cancelled with its turn" in problem["detail"]
    detail = await served.get(f"/v1/sessions/{session}")
    assert [m["content"] for m in detail["messages"]] == ["hello", "echo: hello"]
    assert detail["pending_approvals"] == []
    # The rolled-back turn's model call is gone from the store; its tokens still count.
    assert detail["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]


async def test_a_cancelled_turn_reads_without_a_worker(served: Served) -> None:
    """Last in the module: it kills the worker."""
    session = await _session(served)
    accepted = await served.post(
        "/v1/chat", 202, json={"message": SLOW, "session_id": session, "mode": "async"}
    )
    await served.turn_in(accepted["url"], "running")
    await served.post(f"{accepted['url']}/cancel", 202)
    await served.turn_in(accepted["url"], "cancelled")
    served.worker.kill()
    for url in (accepted["url"], f"/v1/sessions/{session}"):
        started = time.monotonic()
        body = await served.get(url)
        assert time.monotonic() - started < READ_LIMIT_S
    assert (await served.get(accepted["url"]))["status"] == "cancelled"
    assert [m["content"] for m in body["messages"]] == [SLOW]
