"""Read what a session did from Temporal: its runs, their activities, what is pending now."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowHistory

from keel.session_handle import SessionHandle


@dataclass(frozen=True)
class ActivityRun:
    """One activity as its history records it."""

    name: str
    task_queue: str
    attempt: int
    """Of the attempt that ended it (0 while it has not ended)."""
    identity: str
    """Of the worker that ran that attempt."""
    outcome: str
    """`completed`, `failed`, `timed_out`, `canceled`, or `open`."""


async def session_runs(client: Client, handle: SessionHandle) -> list[WorkflowHistory]:
    """The histories of every run of a session, first to latest, along continue-as-new."""
    histories: list[WorkflowHistory] = []
    described = await handle.workflow.describe()
    run_id: str | None = described.raw_description.workflow_execution_info.first_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        continued = last.workflow_execution_continued_as_new_event_attributes
        run_id = continued.new_execution_run_id or None
    return histories


def activities(history: WorkflowHistory, name: str | None = None) -> Iterator[ActivityRun]:
    """The activities of a run, in the order they were scheduled; only `name` if given."""
    scheduled: dict[int, Any] = {}
    started: dict[int, Any] = {}
    ended: dict[int, str] = {}
    for event in history.events:
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes
        elif kind == "activity_task_started_event_attributes":
            attrs = event.activity_task_started_event_attributes
            started[attrs.scheduled_event_id] = attrs
        elif kind is not None and kind.startswith("activity_task_"):
            outcome = kind.removeprefix("activity_task_").removesuffix("_event_attributes")
            ended[getattr(event, kind).scheduled_event_id] = outcome
    for event_id, attrs in scheduled.items():
        if name is not None and attrs.activity_type.name != name:
            continue
        start = started.get(event_id)
        yield ActivityRun(
            name=attrs.activity_type.name,
            task_queue=attrs.task_queue.name,
            attempt=start.attempt if start else 0,
            identity=start.identity if start else "",
            outcome=ended.get(event_id, "open"),
        )


async def pending_activities(handle: SessionHandle) -> list[PendingActivityInfo]:
    """The activities of the session's latest run that have not ended."""
    description = await handle.workflow.describe()
    return list(description.raw_description.pending_activities)


async def wait_for_pending(
    handle: SessionHandle,
    name: str,
    state: PendingActivityState.ValueType = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
    *,
    timeout_s: float = 30,
) -> PendingActivityInfo:
    """Wait until an activity called `name` is pending in `state` (by default: running)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pending in await pending_activities(handle):
            if pending.activity_type.name == name and pending.state == state:
                return pending
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {name} activity in state {PendingActivityState.Name(state)}")


def canceled_at(history: WorkflowHistory, name: str) -> float:
    """When the worker reported the (one) activity called `name` cancelled, in epoch seconds."""
    scheduled = {
        event.event_id
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == name
    }
    for event in history.events:
        canceled = event.activity_task_canceled_event_attributes
        if event.HasField("activity_task_canceled_event_attributes") and (
            canceled.scheduled_event_id in scheduled
        ):
            return event.event_time.ToDatetime(tzinfo=UTC).timestamp()
    raise AssertionError(f"no {name} activity was cancelled")
