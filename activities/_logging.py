"""Bind the running activity's workflow and run ids to every log line it writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from temporalio import activity


@contextmanager
def activity_log_context() -> Iterator[None]:
    """Inside an activity: log lines carry workflow_id, run_id, activity and attempt."""
    info = activity.info()
    with structlog.contextvars.bound_contextvars(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
    ):
        yield
