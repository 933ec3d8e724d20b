"""Token deltas: the in-process and Redis buses, across processes, and under `keel dev`."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from keel.cli._serve import serve
from keel.deltas import Delta, DeltaBus, InProcessDeltaBus, RedisDeltaBus, delta_bus_for
from keel.events import MessageDelta, SessionEvent
from keel.formation import Formation
from keel.settings import Settings
from keel.sse import SseEvent
from keel.store import TranscriptStore
from tests.api.live import live_api, read_events

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
pytestmark = pytest.mark.timeout(60)


def _delta(text: str, index: int = 0) -> Delta:
    payload = MessageDelta(text=text, step=1, attempt=1, index=index)
    return Delta(
        event=SessionEvent.of(payload, session_id="s", turn_id="t", ts=datetime.now(UTC)),
        stream_offset=1,
    )


@pytest.fixture(params=["in-process", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[DeltaBus]:
    opened: DeltaBus = (
        InProcessDeltaBus() if request.param == "in-process" else RedisDeltaBus(REDIS_URL)
    )
    yield opened
    await opened.close()


async def _next(deltas: AsyncIterator[Delta]) -> Delta:
    return await asyncio.wait_for(anext(deltas), 5)


async def test_subscribers_get_their_sessions_deltas_in_order(bus: DeltaBus) -> None:
    key, other = f"keel/test/{uuid.uuid4().hex}", f"keel/test/{uuid.uuid4().hex}"
    async with (
        bus.subscribe(key) as first,
        bus.subscribe(key) as second,
        bus.subscribe(other) as third,
    ):
        for index, text in enumerate(["a", "b", "c"]):
            await bus.publish(key, _delta(text, index))
        await bus.publish(other, _delta("elsewhere"))
        for deltas in (first, second):
            assert [(await _next(deltas)).event.data["text"] for _ in range(3)] == ["a", "b", "c"]
        assert (await _next(third)).event.data["text"] == "elsewhere"
    # Nobody listens any more: publishing is still fine, and a new subscriber
    # sees only what comes after it subscribed.
    await bus.publish(key, _delta("lost"))
    async with bus.subscribe(key) as late:
        await bus.publish(key, _delta("seen"))
        assert (await _next(late)).event.data["text"] == "seen"


async def test_a_delta_survives_the_trip_whole(bus: DeltaBus) -> None:
    key = f"keel/test/{uuid.uuid4().hex}"
    sent = _delta("héllo ✓")
    async with bus.subscribe(key) as deltas:
        await bus.publish(key, sent)
        assert await _next(deltas) == sent


async def test_an_unreachable_redis_costs_deltas_not_streams() -> None:
    bus = RedisDeltaBus("redis://127.0.0.1:1/0")
    try:
        async with bus.subscribe("keel/test/x") as deltas:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(deltas), 0.2)
    finally:
        await bus.close()


def test_the_bus_follows_the_settings() -> None:
    assert delta_bus_for(None, in_process=False) is None
    assert isinstance(delta_bus_for(None, in_process=True), InProcessDeltaBus)
    assert isinstance(delta_bus_for(REDIS_URL, in_process=True), RedisDeltaBus)


def _answer(events: list[SseEvent]) -> tuple[str, str]:
    deltas = "".join(e.json()["text"] for e in events if e.event == "message.delta")
    completed = next(e.json()["content"] for e in events if e.event == "message.completed")
    return deltas, completed


async def test_deltas_cross_processes_through_redis(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> None:
    env = {
        **os.environ,
        "KEEL_TEMPORAL_ADDRESS": settings.temporal_address,
        "KEEL_SESSIONS_TASK_QUEUE": settings.sessions_task_queue,
        "KEEL_ACTIVITIES_TASK_QUEUE": settings.activities_task_queue,
        "KEEL_DATA_DIR": str(settings.resolved_data_dir),
        "KEEL_REDIS_URL": REDIS_URL,
        "KEEL_LOG_FORMAT": "json",
    }
    env.pop("OPENAI_API_KEY", None)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keel.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    bus = RedisDeltaBus(REDIS_URL)
    try:
        async with live_api(client, settings, formation, store, deltas=bus, workers=False) as api:
            events = await read_events(
                api.http, "POST", "/v1/chat", json={"message": "over redis", "stream": True}
            )
    finally:
        worker.terminate()
        output = (await asyncio.wait_for(worker.communicate(), 30))[0].decode()
        await bus.close()
    deltas, completed = _answer(events)
    assert deltas == completed == "echo: over redis", output
    assert events[0].event == "turn.started"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_keel_dev_streams_deltas_in_process_and_stops_with_streams_open(
    settings: Settings, formation: Formation
) -> None:
    # `keel dev` is the dev server plus `serve(api, worker)` in one process.
    stop, port = asyncio.Event(), _free_port()
    serving = asyncio.create_task(
        serve(settings, formation, stop, api=("127.0.0.1", port), worker=True)
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        health = await _healthy(http, serving)
        assert health["events"]["deltas"] == "in-process"
        events = await read_events(
            http, "POST", "/v1/chat", json={"message": "in process", "stream": True}
        )
        assert _answer(events) == ("echo: in process", "echo: in process")
        session_id = events[0].json()["session_id"]
        # A client still streaming must not keep the process from stopping.
        idle = asyncio.create_task(read_events(http, "GET", f"/v1/sessions/{session_id}/events"))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(serving, 20)
        assert [e.event for e in await asyncio.wait_for(idle, 5)][-1] == "turn.completed"


async def _healthy(http: httpx.AsyncClient, serving: asyncio.Task[None]) -> dict[str, Any]:
    for _ in range(200):
        if serving.done():
            serving.result()
        try:
            answer = await http.get("/health")
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            body: dict[str, Any] = answer.json()
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("the API did not become healthy")
