"""The API on a real port (streaming needs one: httpx's ASGI transport buffers bodies)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from api import create_app, stop_streams
from api.deps import AppState
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.settings import Settings
from keel.sse import SseEvent, aiter_sse
from keel.store import TranscriptStore
from tests.conftest import running_workers


class _QuietServer(uvicorn.Server):
    # The test process owns SIGINT/SIGTERM; uvicorn must not take them over.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await stop_streams(app)
        await task


@dataclass
class LiveApi:
    """A served API with its workers: `http` talks to it over a real socket."""

    http: httpx.AsyncClient
    state: AppState


@contextlib.asynccontextmanager
async def live_api(
    client: Client,
    settings: Settings,
    formation: Formation,
    store: TranscriptStore,
    *,
    deltas: DeltaBus | None,
    workers: bool = True,
) -> AsyncIterator[LiveApi]:
    """Workers (unless `workers=False`) and the API on a real port, sharing `deltas`."""
    app = create_app(settings, formation, client=client, store=store, deltas=deltas)
    async with contextlib.AsyncExitStack() as stack:
        if workers:
            await stack.enter_async_context(
                running_workers(client, settings, formation, store, deltas=deltas)
            )
        url = await stack.enter_async_context(serve_app(app))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield LiveApi(http, app.state.keel)


async def read_events(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    until: str | None = None,
    limit: int | None = None,
    **kwargs: Any,
) -> list[SseEvent]:
    """Read a stream until the server ends it, `until` arrives, or `limit` step events have."""
    events: list[SseEvent] = []
    async with http.stream(method, url, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        async for event in aiter_sse(response.aiter_lines()):
            events.append(event)
            if event.event == until or (limit is not None and len(durable(events)) >= limit):
                break
    return events


def durable(events: list[SseEvent]) -> list[SseEvent]:
    """The step events (those with an offset), without the deltas."""
    return [e for e in events if e.id is not None]
