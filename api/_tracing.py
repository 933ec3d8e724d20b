"""Traces of the API's requests: OpenTelemetry's FastAPI instrumentation, when tracing is on.

A request's span is the root of its turn's trace (keel/tracing.py): the Temporal client's
interceptor carries it into the session's workflow and activities.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import trace

UNTRACED_PATHS = "/health$,/metrics$,/console"
"""Probes, scrapes and static files, which no one wants a trace of (regular expressions,
searched in the URL)."""


def instrument_app(app: FastAPI) -> None:
    """Trace each request, without a span per ASGI message (`receive`, `send`)."""
    # Imported only when tracing is on: the instrumentation's import takes a while.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"]
    )


def mark_turn(session_id: str, turn_id: str) -> None:
    """Name the session and turn on the request's span, to find them from a trace."""
    span = trace.get_current_span()
    span.set_attribute("keel.session_id", session_id)
    span.set_attribute("keel.turn_id", turn_id)
