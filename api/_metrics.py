"""Prometheus metrics and the per-request log line."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from keel.logging import get_logger

if TYPE_CHECKING:
    from api.deps import AppState

log = get_logger("keel.api")


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


def install_request_middleware(app: FastAPI, state: AppState) -> None:
    """Count, time and log every request, with a request id bound for its log lines."""

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        state.requests += 1
        route = getattr(request.scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - started
        state.metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        state.metrics.latency.labels(request.method, route).observe(elapsed)
        response.headers["x-request-id"] = request_id
        caller = getattr(request.state, "caller", None)
        log.info(
            "request",
            request_id=request_id,
            method=request.method,
            route=route,
            status=response.status_code,
            ms=round(elapsed * 1000, 1),
            # Who made it (never the key itself): an audit trail per key.
            **({"key": caller.key_name, "tenant": caller.tenant} if caller else {}),
        )
        return response
