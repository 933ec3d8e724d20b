"""Run the API and the workers of one process until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.runtime import Runtime

from api import create_app, stop_streams
from keel.deltas import delta_bus_for
from keel.formation import Formation
from keel.logging import get_logger
from keel.memory import VectorMemory
from keel.schedules import sync_schedules
from keel.settings import Settings
from keel.store import TranscriptStore, open_store
from keel.temporal import connect, ensure_search_attributes, metrics_runtime
from keel.tracing import configure_tracing, shutdown_tracing
from worker import worker_host

log = get_logger("keel")
NO_REDIS_WARNING = (
    "token streaming is off across processes: KEEL_REDIS_URL is not set, so token deltas"
    " reach only an API in the same process (keel dev); step events still stream"
)
"""What `keel api` and `keel worker` log at start without Redis (docs/events.md)."""


class _QuietServer(uvicorn.Server):
    """Uvicorn without its own signal handlers: the process owns Ctrl-C and stops in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def connect_with_retry(
    settings: Settings, *, attempts: int = 60, runtime: Runtime | None = None
) -> Client:
    """Connect to Temporal, retrying for up to `attempts` half-seconds (it may be starting)."""
    for attempt in range(attempts):
        try:
            client = await connect(settings.temporal_address, settings.namespace, runtime=runtime)
        except Exception:  # not up yet
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
        else:
            await ensure_search_attributes(client)
            return client
    raise AssertionError("unreachable")


@dataclass
class Running:
    """The parts of a process, running."""

    tasks: list[asyncio.Task[None]]
    """One per worker and one for the API: each ends only when its part stops or dies."""
    url: str | None = None
    """The API's base URL, once it listens (its port resolved when it asked for 0)."""


async def serve(
    settings: Settings,
    formation: Formation,
    stop: asyncio.Event,
    *,
    api: tuple[str, int] | None,
    worker: bool,
    task_queues: Sequence[str] | None = None,
    max_concurrent_activities: int = 100,
) -> None:
    """Run the API (at `api` = host, port) and/or the workers until `stop` is set."""
    async with running(
        settings,
        formation,
        api=api,
        worker=worker,
        task_queues=task_queues,
        max_concurrent_activities=max_concurrent_activities,
    ) as parts:
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*parts.tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done - {stopper}:
            task.result()  # a part that died surfaces its error


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    formation: Formation,
    *,
    api: tuple[str, int] | None,
    worker: bool,
    task_queues: Sequence[str] | None = None,
    max_concurrent_activities: int = 100,
    quiet: bool = False,
) -> AsyncIterator[Running]:
    """Start the API (at `api` = host, port; port 0 picks one) and/or the workers; stop on exit.

    `keel dev`, `keel api` and `keel worker` run it until a signal; the embedded
    client (`keel.client`) for as long as its block runs. `quiet`: uvicorn logs
    warnings only, and no access log.
    """
    in_process = bool(api) and worker
    if not settings.redis_url and not in_process:
        # Said first, before Temporal is reached: a deployment without Redis still
        # works, and nothing else would tell its operator why no tokens stream.
        log.warning(NO_REDIS_WARNING)
    if configure_tracing(_service_name(api=bool(api), worker=worker)):
        log.info("tracing on: spans go to the OTLP endpoint of OTEL_EXPORTER_OTLP_*")
    runtime = None
    if worker and settings.metrics_port is not None:
        runtime = metrics_runtime(settings.metrics_host, settings.metrics_port)
        log.info("worker metrics", url=f"http://{settings.metrics_host}:{settings.metrics_port}")
    client = await connect_with_retry(settings, runtime=runtime)
    store: TranscriptStore = open_store(formation.memory.store, data_dir=settings.resolved_data_dir)
    vector = formation.memory.vector
    # A local Qdrant directory admits one process: the worker's (shared with an API beside it).
    vector_memory = (
        VectorMemory.open(vector, data_dir=settings.resolved_data_dir)
        if vector.enabled and (worker or vector.url)
        else None
    )
    # Token deltas: Redis when configured; else in-process when the API and the
    # worker share this process (keel dev); else none.
    deltas = delta_bus_for(settings.redis_url, in_process=in_process)
    if deltas:
        log.info("token deltas", channel=deltas.kind)
    app: FastAPI | None = None
    tasks: list[asyncio.Task[None]] = []
    server: _QuietServer | None = None
    url: str | None = None
    workers = []
    # The host (tools, MCP sessions) closes last, after its workers have stopped.
    hosting = contextlib.AsyncExitStack()
    try:
        if worker:
            workers = await hosting.enter_async_context(
                worker_host(
                    client,
                    settings=settings,
                    formation=formation,
                    store=store,
                    task_queues=task_queues,
                    max_concurrent_activities=max_concurrent_activities,
                    vector_memory=vector_memory,
                    deltas=deltas,
                )
            )
            await sync_schedules(client, formation, settings)
            tasks += [asyncio.create_task(w.run()) for w in workers]
            log.info("worker polling", task_queues=[w.task_queue for w in workers])
        if api:
            app = create_app(
                settings,
                formation,
                client=client,
                store=store,
                vector_memory=vector_memory,
                deltas=deltas,
            )
            host, port = api
            config = uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                log_level="warning" if quiet else None,
                access_log=not quiet,
            )
            server = _QuietServer(config)
            tasks.append(asyncio.create_task(server.serve()))
            url = await _listening(server, tasks[-1])
        yield Running(tasks, url)
    finally:
        log.info("shutting down")
        if server and app:
            server.should_exit = True
            await stop_streams(app)
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        await hosting.aclose()
        await store.close()
        if vector_memory:
            await vector_memory.close()
        if deltas:
            await deltas.close()
        shutdown_tracing()  # last: the spans of the shutdown's own calls go too


def _service_name(*, api: bool, worker: bool) -> str:
    """The process's `service.name` in traces, unless `OTEL_SERVICE_NAME` says otherwise."""
    if api and worker:
        return "keel"
    return "keel-api" if api else "keel-worker"


async def _listening(server: uvicorn.Server, task: asyncio.Task[None]) -> str:
    """The base URL of a server once it listens; the server's error if it fails to start."""
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the API server stopped before it listened")
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"
