"""How the session workflow schedules each kind of activity: every timeout and retry policy
in one place, as named values, and the one function that schedules with them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from keel.formation import ModelConfig

R = TypeVar("R")

HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""A call on a killed worker is retried within seconds, not at its start-to-close."""


class ActivityOptions:
    """Timeouts and retries of one kind of activity.

    A plain class, not a dataclass or NamedTuple: the sandbox imports this module
    afresh for every session a worker loads, and those compile code to build a
    class (a fifth of the import, measured in docs/performance.md).

    Args:
        start_to_close: How long one attempt may take.
        heartbeat: Set for calls that heartbeat (model and tool calls), so a lost
            worker shows fast.
        retry: None: Temporal's default (retry without end).
    """

    __slots__ = ("heartbeat", "retry", "start_to_close")

    def __init__(
        self,
        start_to_close: timedelta,
        heartbeat: timedelta | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.start_to_close = start_to_close
        self.heartbeat = heartbeat
        self.retry = retry


TOOL = ActivityOptions(timedelta(minutes=5), HEARTBEAT_TIMEOUT, RetryPolicy(maximum_attempts=3))
"""A tool call; a tool that keeps failing becomes an error result for the model."""
VALIDATE_ARGUMENTS = ActivityOptions(timedelta(seconds=30))
"""Checking a reviewer's revised arguments against the tool's schema."""
MEMORY = ActivityOptions(
    timedelta(seconds=60),
    retry=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=10)),
)
"""Recall, writes and references: memory that fails is skipped, not fatal."""
SEED_TRANSCRIPT = ActivityOptions(
    timedelta(seconds=60),
    retry=RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=30)),
)
"""Writing messages to a store that lacks them."""
ASK_SESSION = ActivityOptions(
    timedelta(minutes=30), HEARTBEAT_TIMEOUT, RetryPolicy(maximum_attempts=3)
)
"""The other session may itself call tools or wait for an approval."""
PUBLISH = ActivityOptions(timedelta(minutes=1), retry=RetryPolicy(maximum_attempts=3))


def model_call(model: ModelConfig) -> ActivityOptions:
    """A model step: the model's own time limit and attempts; it streams, so it heartbeats."""
    return ActivityOptions(
        timedelta(seconds=model.timeout_s + 30),
        HEARTBEAT_TIMEOUT,
        RetryPolicy(maximum_attempts=model.max_attempts),
    )


def memory_model_call(model: ModelConfig) -> ActivityOptions:
    """Memory work done by the model (summaries, facts): its time limit, memory's retries."""
    return ActivityOptions(timedelta(seconds=model.timeout_s + 30), HEARTBEAT_TIMEOUT, MEMORY.retry)


async def run_activity(
    name: str,
    arg: Any,
    result_type: type[R],
    options: ActivityOptions,
    *,
    task_queue: str,
    summary: str,
) -> R:
    """Schedule activity `name` with `options`; its `summary` shows in the Temporal UI.

    A cancelled turn cancels the call it awaits; the workflow goes on only once the
    call has stopped (it hears of the cancel at its next heartbeat), so a cancelled
    model call can never write its answer after the turn's messages were rolled back.
    The cancellation type is the SDK's own bookkeeping, not part of the command that
    history records: histories without a cancelled activity (every one before
    `TURN_CONTROL_PATCH`) replay the same.
    """
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        task_queue=task_queue,
        start_to_close_timeout=options.start_to_close,
        heartbeat_timeout=options.heartbeat,
        retry_policy=options.retry,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=summary,
    )
