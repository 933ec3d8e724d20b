"""SIGKILL the API during a turn: the turn completes in the worker; a new API serves it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from keel.names import SESSION_WORKFLOW, Activities, Updates
from keel.session_handle import SessionHandle
from keel.settings import Settings
from tests.procs import (
    KEEL,
    WORKER_READY,
    KeelProcess,
    free_port,
    keel_process,
    worker_process,
    write_formation,
)
from tests.runs import activities, session_runs, wait_for_pending

FORMATION = {"models": {"default": {"provider": "scripted"}}, "agents": [{"name": "assistant"}]}


class _Keel:
    """A worker and an API, each its own process, as in a deployment."""

    def __init__(self, tmp_path: Path, settings: Settings) -> None:
        self._tmp_path, self._settings = tmp_path, settings
        self._formation, _ = write_formation(tmp_path, FORMATION)
        self.url = ""
        self.processes: list[KeelProcess] = []

    async def worker(self) -> KeelProcess:
        return await self._started(worker_process(self._tmp_path, self._settings, self._formation))

    async def api(self) -> KeelProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [*KEEL, "api", "--port", str(port)]
        api = keel_process(self._tmp_path, self._settings, self._formation, argv, name="api")
        return await self._started(api, ready=f"{self.url}/health")

    async def _started(self, process: KeelProcess, ready: str = WORKER_READY) -> KeelProcess:
        self.processes.append(process)
        return await process.start(ready=ready)


@pytest.fixture
def keel(tmp_path: Path, settings: Settings) -> Iterator[_Keel]:
    started = _Keel(tmp_path, settings)
    yield started
    for process in started.processes:
        process.stop()


async def _create_session(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post("/v1/sessions", json={})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_the_api_killed_during_a_sync_chat_turn_loses_nothing(
    keel: _Keel, client: Client
) -> None:
    await keel.worker()
    api = await keel.api()
    session = await _create_session(keel.url)
    handle = SessionHandle(client, session["workflow_id"])
    async with httpx.AsyncClient(base_url=keel.url, timeout=30) as http:
        chat = asyncio.create_task(
            http.post("/v1/chat", json={"message": "slow [[sleep 2]]", "session_id": session["id"]})
        )
        await wait_for_pending(handle, Activities.CALL_MODEL)
        api.kill()
        with pytest.raises(httpx.TransportError):
            await chat

    await keel.api()
    async with httpx.AsyncClient(base_url=keel.url, timeout=30) as http:
        messages = await _messages_once_answered(http, session["id"])
        again = await http.post(
            "/v1/chat", json={"message": "still here?", "session_id": session["id"]}
        )
    assert messages == [("user", "slow [[sleep 2]]"), ("assistant", "echo: slow")]
    assert again.status_code == 200 and again.json()["message"]["content"] == "echo: still here?"


async def test_the_api_killed_during_a_keyed_chat_answers_the_retry_with_the_original_turn(
    keel: _Keel, client: Client, settings: Settings
) -> None:
    await keel.worker()
    api = await keel.api()
    body = {"message": "slow [[sleep 2]]"}  # a new session: its id is in the key's record
    headers = {"Idempotency-Key": "order-42:chat"}
    async with httpx.AsyncClient(base_url=keel.url, timeout=30) as http:
        chat = asyncio.create_task(http.post("/v1/chat", json=body, headers=headers))
        handle = await _only_session(client, settings)
        await wait_for_pending(handle, Activities.CALL_MODEL)
        api.kill()
        with pytest.raises(httpx.TransportError):
            await chat

    second = await keel.api()  # another process: the same store and Temporal, nothing in memory
    async with httpx.AsyncClient(base_url=keel.url, timeout=30) as http:
        retried = await http.post("/v1/chat", json=body, headers=headers)
        assert "idempotent retry of an unfinished request" in second.log()
        detail = (await http.get(f"/v1/sessions/{handle.session_id}")).json()
        replayed = await http.post("/v1/chat", json=body, headers=headers)

    assert retried.status_code == 200, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    answer = retried.json()
    assert answer["session_id"] == handle.session_id
    assert answer["message"]["content"] == "echo: slow"
    assert [(m["role"], m["content"], m["turn_id"]) for m in detail["messages"]] == [
        ("user", "slow [[sleep 2]]", answer["turn_id"]),
        ("assistant", "echo: slow", answer["turn_id"]),
    ]
    assert replayed.json() == answer and replayed.headers["Idempotent-Replayed"] == "true"
    runs = await session_runs(client, handle)
    sent = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for run in runs
        for e in run.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert [n for n in sent if n in (Updates.CHAT, Updates.SEND_MESSAGE)] == [Updates.CHAT]
    assert len([a for run in runs for a in activities(run, Activities.CALL_MODEL)]) == 1


async def _only_session(client: Client, settings: Settings) -> SessionHandle:
    """The one session on this test's task queue, once Temporal's visibility lists it."""
    query = f"WorkflowType = '{SESSION_WORKFLOW}' AND TaskQueue = '{settings.sessions_task_queue}'"
    for _ in range(300):
        found = [w async for w in client.list_workflows(query)]
        if found:
            assert len(found) == 1
            return SessionHandle(client, found[0].id)
        await asyncio.sleep(0.1)
    raise AssertionError("no session started")


async def _messages_once_answered(
    http: httpx.AsyncClient, session_id: str
) -> list[tuple[str, str]]:
    for _ in range(300):
        detail = (await http.get(f"/v1/sessions/{session_id}")).json()
        messages = [(m["role"], m["content"]) for m in detail["messages"]]
        if len(messages) >= 2:
            return messages
        await asyncio.sleep(0.1)
    raise AssertionError("the turn never completed")


async def test_the_api_killed_during_a_streamed_turn_resumes_the_stream(
    keel: _Keel, client: Client
) -> None:
    await keel.worker()
    api = await keel.api()
    session = await _create_session(keel.url)
    seen: list[dict[str, object]] = []
    last_id = ""
    async with httpx.AsyncClient(base_url=keel.url, timeout=30) as http:
        body = {"message": "slow [[sleep 2]]", "session_id": session["id"], "stream": True}
        async with _sse(http, "POST", "/v1/chat", json=body) as events:
            async for event_id, data in events:
                last_id = event_id or last_id
                seen.append(data)
                if data["type"] == "turn.started":
                    api.kill()
                    break

    await keel.api()
    async with (
        httpx.AsyncClient(base_url=keel.url, timeout=30) as http,
        _sse(
            http,
            "GET",
            f"/v1/sessions/{session['id']}/events",
            headers={"Last-Event-ID": last_id},
        ) as events,
    ):
        async for _, data in events:
            seen.append(data)
            if data["type"] in ("turn.completed", "turn.failed"):
                break
        detail = (await http.get(f"/v1/sessions/{session['id']}")).json()

    types = [e["type"] for e in seen]
    assert types[0] == "turn.started" and types[-1] == "turn.completed"
    assert types.count("turn.started") == 1, "a resumed stream does not replay what was read"
    assert types.count("message.completed") == 1
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]


@contextlib.asynccontextmanager
async def _sse(
    http: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> AsyncIterator[AsyncIterator[tuple[str, dict[str, object]]]]:
    """Server-sent events as (id, data) pairs; `message.delta` frames are skipped."""

    async def frames(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, object]]]:
        event_id, data = "", ""
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif not line and data:
                parsed = json.loads(data)
                if parsed.get("type") != "message.delta":
                    yield event_id, parsed
                event_id, data = "", ""

    async with http.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        yield frames(response)
