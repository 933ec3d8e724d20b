"""Bind the running activity's workflow and run ids, and its trace, to every log line it writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from opentelemetry import trace
from temporalio import activity


def current_trace_id() -> str | None:
    """The id of the trace the code runs in (32 hex digits), or None without tracing."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def activity_log_context() -> Iterator[None]:
    """Inside an activity: log lines carry workflow_id, run_id, activity and attempt, and
    with tracing on the turn's `trace_id`: a log line leads from a session to its trace."""
    info = activity.info()
    trace_id = current_trace_id()
    with structlog.contextvars.bound_contextvars(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **({"trace_id": trace_id} if trace_id else {}),
    ):
        yield
