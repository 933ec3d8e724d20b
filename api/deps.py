"""FastAPI dependencies: the app's shared objects and the caller's identity."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from temporalio.client import Client

from api._metrics import Metrics
from api._streams import SessionStreams
from api.problems import Problem
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore

ANONYMOUS = "anonymous"


@dataclass
class AppState:
    """What every request shares; one per app, on `app.state.keel`."""

    settings: Settings
    formation: Formation
    store: TranscriptStore
    client: Client | None = None
    vector_memory: VectorMemory | None = None
    """Vector memory, shared with the worker of this process or on a Qdrant server."""
    started_at: float = field(default_factory=time.monotonic)
    requests: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    streams: SessionStreams = field(default_factory=SessionStreams)
    deltas: DeltaBus | None = None
    """Token deltas; None when this API cannot receive them (no Redis, no worker here)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant and user their sessions belong to."""

    tenant: str
    user_id: str
    user_given: bool
    """Whether the caller named a user (else `anonymous` is assumed)."""


def get_state(request: Request) -> AppState:
    """The app's shared state."""
    state: AppState = request.app.state.keel
    return state


State = Annotated[AppState, Depends(get_state)]


def get_client(state: State) -> Client:
    """The Temporal client, or 503 while Temporal cannot be reached."""
    if state.client is None:
        raise Problem(503, "Temporal is not reachable yet", type_="temporal-unavailable")
    return state.client


def get_caller(
    state: State,
    x_user_id: Annotated[str | None, Header(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")] = None,
) -> Caller:
    """The caller. Without API keys, `X-User-Id` names the user (dev mode)."""
    return Caller(
        tenant=state.settings.tenant,
        user_id=x_user_id or ANONYMOUS,
        user_given=x_user_id is not None,
    )


async def request_stack() -> AsyncIterator[AsyncExitStack]:
    """Resources that live as long as the response: closed after a stream ends or drops."""
    async with AsyncExitStack() as stack:
        yield stack


TemporalClient = Annotated[Client, Depends(get_client)]
CurrentCaller = Annotated[Caller, Depends(get_caller)]
RequestStack = Annotated[AsyncExitStack, Depends(request_stack)]
