"""An activity's log lines name its workflow, and with tracing on its trace."""

from __future__ import annotations

import structlog
from opentelemetry.sdk.trace import TracerProvider
from temporalio.testing import ActivityEnvironment

from activities._logging import activity_log_context


async def _bound() -> dict[str, object]:
    with activity_log_context():
        return dict(structlog.contextvars.get_contextvars())


async def test_log_lines_carry_the_workflow_and_no_trace_without_tracing() -> None:
    bound = await ActivityEnvironment().run(_bound)
    assert {"workflow_id", "run_id", "activity", "attempt"} <= bound.keys()
    assert "trace_id" not in bound


async def test_log_lines_carry_the_trace_id_of_the_activitys_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("RunActivity:test") as span:
        bound = await ActivityEnvironment().run(_bound)
    assert bound["trace_id"] == format(span.get_span_context().trace_id, "032x")
