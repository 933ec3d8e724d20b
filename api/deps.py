"""FastAPI dependencies: the app's shared objects, the caller's identity, and per-key limits."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api._auth import ANONYMOUS, Caller, CallerRole, match_key, resolve_caller
from api._limits import Limits
from api._metrics import Metrics
from api._page_tokens import PageTokens
from api._streams import SessionStreams
from api._tools import ToolSchemas
from api.problems import Problem
from api.schemas import TenantIdHeader, UserIdHeader
from keel.deltas import DeltaBus
from keel.formation import Formation
from keel.keys import ApiKey, KeyRing, load_keys
from keel.memory import VectorMemory
from keel.settings import Settings
from keel.store import TranscriptStore
from keel.temporal import TaskQueues, task_queues

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATED",
    "AppState",
    "Caller",
    "CallerRole",
    "CurrentCaller",
    "RequestStack",
    "State",
    "StreamClaim",
    "StreamSlot",
    "TemporalClient",
    "authenticate",
    "bearer",
    "enforce_rate_limit",
    "get_caller",
    "get_client",
    "get_state",
    "hold_stream",
    "request_stack",
    "require_admin",
    "sees_internals",
    "stream_claim",
]


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
    keys: KeyRing = field(init=False)
    """The accepted API keys, from the settings; empty means dev mode."""
    limits: Limits = field(init=False)
    page_tokens: PageTokens = field(init=False)
    tool_schemas: ToolSchemas = field(init=False)
    """Tool schemas for clients (MCP servers are started on first ask; closed at shutdown)."""
    queues: TaskQueues = field(init=False)
    """Where this formation's sessions run, and which sessions of the namespace are its own."""

    def __post_init__(self) -> None:
        self.queues = task_queues(self.settings, self.formation)
        self.tool_schemas = ToolSchemas(self.formation)
        self.keys = load_keys(self.settings)
        self.limits = Limits.from_settings(self.settings)
        self.page_tokens = PageTokens(self.settings.page_token_secret)


async def get_state(request: Request) -> AppState:
    """The app's shared state (async, as every dependency here: FastAPI runs a plain
    `def` one in its thread pool, a thread hop per request)."""
    state: AppState = request.app.state.keel
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_client(state: State) -> Client:
    """The Temporal client, or 503 while Temporal cannot be reached."""
    if state.client is None:
        raise Problem(503, "Temporal is not reachable yet", type_="temporal-unavailable")
    return state.client


bearer = HTTPBearer(auto_error=False, description="An admin or a client key; see docs/security.md.")


async def authenticate(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey | None:
    """The request's key, first of all: a 401 without a valid one once keys are configured.

    It reads nothing but the key, so it runs before any other input is checked:
    a caller without a key gets a 401 whatever else is wrong with its request,
    and learns nothing of the rest. None in dev mode (no keys configured).
    """
    if not state.keys.enabled:
        return None
    return match_key(state.keys, credentials.credentials if credentials else None)


RequestKey = Annotated[ApiKey | None, Depends(authenticate)]


async def get_caller(
    request: Request,
    state: State,
    key: RequestKey,
    x_user_id: UserIdHeader = None,
    x_tenant_id: TenantIdHeader = None,
) -> Caller:
    """The caller: its key's role and tenant, and the user named by `X-User-Id`.

    Without configured keys (dev mode) no key is needed and `X-User-Id`, if
    sent, names the user. Async, like the other limit dependencies, so they
    run on the event loop and never race in a thread pool.
    """
    caller = resolve_caller(key, state.settings.tenant, user_id=x_user_id, tenant_id=x_tenant_id)
    request.state.caller = caller  # for the request's log line: who did it
    return caller


async def request_stack() -> AsyncIterator[AsyncExitStack]:
    """Resources that live as long as the response: closed after a stream ends or drops."""
    async with AsyncExitStack() as stack:
        yield stack


TemporalClient = Annotated[Client, Depends(get_client)]
CurrentCaller = Annotated[Caller, Depends(get_caller)]
RequestStack = Annotated[AsyncExitStack, Depends(request_stack)]


async def enforce_rate_limit(state: State, caller: CurrentCaller) -> None:
    """Take one request from the caller's key's budget; 429 with Retry-After when spent.

    Dev-mode callers have no key, and no budget to spend.
    """
    await state.limits.rate.check(caller.key_name)


async def require_admin(caller: CurrentCaller) -> Caller:
    """The caller, if it holds an admin key (or no keys are configured); else 403."""
    if caller.role == "client":
        raise Problem(403, "this needs an admin key", type_="admin-only")
    return caller


async def sees_internals(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> bool:
    """Whether the caller may see the process's internals: an admin key, or dev mode.

    Never refuses: public routes (`/health`) answer everyone, in less detail.
    """
    if not state.keys.enabled:
        return True
    key = state.keys.match(credentials.credentials) if credentials else None
    return key is not None and key.role == "admin"


async def stream_claim(
    state: State, caller: CurrentCaller
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A function that takes one of the caller's stream slots, 429 when none is free.

    Slots taken are given back when the response ends, streaming included: a
    dependency with `yield` exits only then. For routes that stream only
    sometimes (`/v1/chat` with `stream: true`); SSE routes use `StreamSlot`.
    """
    async with contextlib.AsyncExitStack() as held:

        async def claim() -> None:
            await held.enter_async_context(state.limits.streams.hold(caller.key_name))

        yield claim


StreamClaim = Annotated[Callable[[], Awaitable[None]], Depends(stream_claim)]


async def hold_stream(claim: StreamClaim) -> None:
    """Take a stream slot for the whole response."""
    await claim()


AUTHENTICATED = [Depends(authenticate), Depends(get_caller), Depends(enforce_rate_limit)]
"""Router dependencies of every `/v1` router: a valid key (or dev mode), the caller it acts
for, then the rate limit."""
StreamSlot = Depends(hold_stream)
"""Route dependency of every SSE route: `dependencies=[StreamSlot]`."""
