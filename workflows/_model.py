"""One model step of a session: the LLM activity's options, and re-seeding a lost store."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.llm import CALL_MODEL, PREFIX_MISSING, CallModelInput, CallModelResult
    from keel.messages import Message
    from keel.session import StartSessionInput

HEARTBEAT_TIMEOUT = timedelta(seconds=15)
"""A model call on a killed worker is retried within seconds, not at its start-to-close."""


async def call_model(
    session: StartSessionInput, call: CallModelInput, run_messages: list[Message]
) -> CallModelResult:
    """Run the LLM activity; if the store lost the transcript, re-seed it and run again.

    Args:
        session: The session's input (task queue, agent).
        call: The step, carrying only the messages the store may lack.
        run_messages: Every message of this run, to re-seed a store that lost them.
    """
    try:
        return await _execute(session, call)
    except ActivityError as err:
        if not (isinstance(err.cause, ApplicationError) and err.cause.type == PREFIX_MISSING):
            raise
    # The store lost what it held (or is new): hand it everything this run knows.
    workflow.logger.warning("transcript store lacks the prefix; re-seeding it")
    first = run_messages[0].seq if run_messages else call.upto_seq
    reseed = {"upto_seq": first, "new_messages": run_messages, "reseed": True}
    return await _execute(session, call.model_copy(update=reseed))


async def _execute(session: StartSessionInput, call: CallModelInput) -> CallModelResult:
    model = call.model
    return await workflow.execute_activity(
        CALL_MODEL,
        call,
        result_type=CallModelResult,
        # A model with its own queue (a GPU worker's) runs only there.
        task_queue=model.task_queue or session.activities_task_queue,
        start_to_close_timeout=timedelta(seconds=model.timeout_s + 30),
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RetryPolicy(maximum_attempts=model.max_attempts),
        summary=f"llm {model.provider}/{model.model or session.agent.model_name} step {call.step}",
    )
