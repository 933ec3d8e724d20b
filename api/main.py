"""The FastAPI app: routers per resource, problem+json errors, a Temporal client per process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from temporalio.client import Client

from api._body_limit import install_body_limit
from api._idempotency import install_idempotency
from api._metrics import install_request_middleware
from api._openai_errors import OPENAI_ERRORS, install_openai_errors
from api._openapi import install_openapi
from api._streams import SessionStreams
from api._tracing import instrument_app
from api.deps import AUTHENTICATED, AppState
from api.problems import V1_PROBLEMS, install_problem_handlers
from api.protocols import Protocols
from api.routes import (
    agents,
    approvals,
    chat,
    console,
    events,
    health,
    inbox,
    memory,
    openai_compat,
    plans,
    sessions,
    triggers,
    usage,
)
from keel import __version__
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.logging import get_logger
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore, open_store
from keel.temporal import connect, ensure_search_attributes
from keel.tracing import tracing_enabled

log = get_logger("keel.api")
RECONNECT_EVERY_S = 2.0
PUBLIC_ROUTERS = (health, triggers)
"""Routers that authenticate per route: signed webhooks carry a signature, not a key."""
V1_ROUTERS = (agents, sessions, approvals, plans, inbox, chat, events, memory, usage)
"""Every router here needs a key (once keys are configured) and counts against its rate limit."""


def create_app(
    settings: Settings,
    formation: Formation,
    *,
    client: Client | None = None,
    store: TranscriptStore | None = None,
    vector_memory: VectorMemory | None = None,
    deltas: DeltaBus | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: process settings.
        formation: the loaded formation.
        client: a connected Temporal client; without one the app connects at
            start and keeps retrying in the background while Temporal is down.
        store: the transcript store; by default the formation's, opened here.
        vector_memory: the vector memory when the formation enables it (the caller closes it).
        deltas: where token deltas arrive from LLM activities; None: the
            event streams carry step events only. The caller owns it.
    """
    state = AppState(
        settings=settings,
        formation=formation,
        store=store or open_store(formation.memory.store, data_dir=settings.resolved_data_dir),
        client=client,
        vector_memory=vector_memory,
        streams=SessionStreams(poll_cooldown=timedelta(seconds=settings.events_poll_cooldown_s)),
        deltas=deltas,
    )
    protocols = Protocols(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connecting = None if client else asyncio.create_task(_connect_until_up(state))
        try:
            async with protocols.running():
                yield
        finally:
            if connecting:
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
            await state.streams.close()
            await state.tool_schemas.aclose()
            await state.limits.close()
            if store is None:
                await state.store.close()

    app = FastAPI(
        title="Keel",
        version=__version__,
        summary="A durable runtime for AI agents, built on Temporal.",
        lifespan=lifespan,
    )
    app.state.keel = state
    install_problem_handlers(app)
    install_openapi(app, state)
    install_openai_errors(app)
    install_idempotency(app)
    # Added before the request middleware, so it runs inside it: 413s are logged and counted.
    install_body_limit(app, settings.max_body_bytes)
    install_request_middleware(app, state)
    if tracing_enabled():
        instrument_app(app)
    for module in PUBLIC_ROUTERS:
        app.include_router(module.router)
    app.include_router(console.router)  # static files, public; the calls they make carry keys
    for module in V1_ROUTERS:
        app.include_router(module.router, dependencies=AUTHENTICATED, responses=V1_PROBLEMS)
    # OpenAI's chat API: the same keys and limits, OpenAI's error shape.
    app.include_router(openai_compat.router, dependencies=AUTHENTICATED, responses=OPENAI_ERRORS)
    protocols.install(app)  # `/mcp` and `/a2a`: the same keys, behind their own gate
    if not state.keys.enabled:
        log.warning(
            "no API keys configured: every caller is trusted; serve on loopback only",
            hint="set KEEL_ADMIN_KEYS / KEEL_CLIENT_KEYS or KEEL_KEYS_FILE (keel keys new)",
        )
    return app


async def stop_streams(app: FastAPI) -> None:
    """End every open event stream, so that a stopping server is not held open by SSE clients."""
    state: AppState = app.state.keel
    await state.streams.close()


async def _connect_until_up(state: AppState) -> None:
    settings = state.settings
    while True:
        try:
            client = await connect(settings.temporal_address, settings.namespace)
        except Exception as err:  # any failure: Temporal is not up yet
            log.warning(
                "temporal not reachable; retrying",
                address=settings.temporal_address,
                error=str(err),
            )
            await asyncio.sleep(RECONNECT_EVERY_S)
            continue
        await ensure_search_attributes(client)
        state.client = client
        log.info("connected to temporal", address=settings.temporal_address)
        return
