"""The door of the protocol endpoints (MCP, A2A): the same keys, identity and rate limit as `/v1`.

Their requests never pass FastAPI's dependencies (each protocol's SDK answers
them), so this ASGI wrapper does what `api.deps.AUTHENTICATED` does for a `/v1`
router, and answers a refusal in JSON-RPC's shape, which both protocols speak,
with the HTTP status and headers of the `/v1` problem (401 with
`WWW-Authenticate`, 429 with `Retry-After`).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api._auth import Caller, match_key, resolve_caller
from api.deps import AppState
from api.problems import Problem
from api.schemas import ID_MAX_LENGTH, ID_PATTERN, TENANT_MAX_LENGTH
from keel.settings import TENANT_PATTERN

CALLER_KEY = "caller"
"""Where the caller goes in the request's state (the request log line reads it there too)."""
INVALID_REQUEST = -32600
"""JSON-RPC's code for a request the server will not take."""

_IDENTITY_HEADERS = (
    ("x-user-id", ID_PATTERN, ID_MAX_LENGTH),
    ("x-tenant-id", TENANT_PATTERN, TENANT_MAX_LENGTH),
)


class CallerGate:
    """Let through only requests with a valid key (once keys are configured), within limits.

    Args:
        app: the protocol's ASGI app.
        state: the API's shared state (keys, limits, settings).
    """

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self._app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            caller = await self._caller(Headers(scope=scope))
        except Problem as problem:
            await refusal(problem)(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        await self._app(scope, receive, send)

    async def _caller(self, headers: Headers) -> Caller:
        state = self._state
        key = None
        if state.keys.enabled:
            # The key first: a caller without one learns nothing of the rest of its request.
            key = match_key(state.keys, _bearer(headers.get("authorization")))
        for name, pattern, limit in _IDENTITY_HEADERS:
            value = headers.get(name)
            if value is not None and (len(value) > limit or not re.fullmatch(pattern, value)):
                raise Problem(422, f"{name}: must match {pattern}", type_="invalid-request")
        caller = resolve_caller(
            key,
            state.settings.tenant,
            user_id=headers.get("x-user-id"),
            tenant_id=headers.get("x-tenant-id"),
        )
        await state.limits.rate.check(caller.key_name)
        return caller


class ProtocolRoute(Route):
    """A route that names itself to the request log and metrics, as FastAPI's routes do."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def caller_of(connection: HTTPConnection) -> Caller:
    """The caller `CallerGate` let in with this request."""
    caller: Caller = connection.scope["state"][CALLER_KEY]
    return caller


def refusal(problem: Problem) -> JSONResponse:
    """A JSON-RPC error response with the problem's HTTP status, headers and words.

    The id is null: the gate refuses before it reads the body (JSON-RPC allows
    null when the request's id is unknown).
    """
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": INVALID_REQUEST,
            "message": problem.detail,
            "data": {
                "status": problem.status,
                "type": f"/problems/{problem.type_}" if problem.type_ else "about:blank",
            },
        },
    }
    return JSONResponse(body, status_code=problem.status, headers=problem.headers)


def _bearer(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
