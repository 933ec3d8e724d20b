"""Prometheus metrics and the per-request log line."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.logging import get_logger
from keel.names import SESSION_WORKFLOW
from keel.temporal import PENDING_APPROVALS_ATTR

if TYPE_CHECKING:
    from api.deps import AppState

log = get_logger("keel.api")
COUNT_TIMEOUT_S = 2.0


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keel_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "keel_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.awaiting_approval = Gauge(
            "keel_sessions_awaiting_approval",
            "Running sessions of the formation with approvals waiting for a decision",
            registry=self.registry,
        )


async def refresh_gauges(state: AppState) -> None:
    """Set the gauges read from Temporal's visibility, as a scrape asks for them.

    One count query, as the inbox lists sessions (`KeelPendingApprovals > 0`); with
    Temporal unreachable or slow the gauge keeps its last value, and the scrape answers.
    """
    client = state.client
    if client is None:
        return
    query = (
        f"WorkflowType = '{SESSION_WORKFLOW}' AND {state.queues.visibility_clause()}"
        f" AND ExecutionStatus = 'Running' AND {PENDING_APPROVALS_ATTR.name} > 0"
    )
    try:
        counted = await asyncio.wait_for(client.count_workflows(query), COUNT_TIMEOUT_S)
    except Exception as err:  # any failure: the scrape still answers
        log.warning("could not count sessions awaiting approval", error=str(err))
        return
    state.metrics.awaiting_approval.set(counted.count)


def install_request_middleware(app: FastAPI, state: AppState) -> None:
    """Count, time and log every request, with a request id bound for its log lines."""
    app.add_middleware(RequestObserver, state=state)


class RequestObserver:
    """Pure ASGI, not `BaseHTTPMiddleware`: that one runs each request through a task
    and memory streams of its own, which cost the API an eighth of its CPU per turn
    (docs/performance.md). A request is timed to its response's start, as a stream
    (SSE) is logged when it opens."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self._app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
                self._observe(scope, request_id, message["status"], time.perf_counter() - started)
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._app(scope, receive, observed_send)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    def _observe(self, scope: Scope, request_id: str, status: int, elapsed: float) -> None:
        state = self._state
        state.requests += 1
        method: str = scope["method"]
        route = getattr(scope.get("route"), "path", "unmatched")
        state.metrics.requests.labels(method, route, str(status)).inc()
        state.metrics.latency.labels(method, route).observe(elapsed)
        caller = scope.get("state", {}).get("caller")
        log.info(
            "request",
            request_id=request_id,
            method=method,
            route=route,
            status=status,
            ms=round(elapsed * 1000, 1),
            # Who made it (never the key itself): an audit trail per key.
            **({"key": caller.key_name, "tenant": caller.tenant} if caller else {}),
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
