"""One model step of a session: the LLM activity, and re-seeding a store that lost its messages."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import _options
from workflows._patches import CHUNKED_RESEED_PATCH, MODEL_FALLBACK_PATCH, patched

with workflow.unsafe.imports_passed_through():
    from keel.contracts.llm import (
        CallModelInput,
        CallModelResult,
        SeedTranscriptInput,
        SeedTranscriptResult,
    )
    from keel.formation import ModelConfig
    from keel.messages import Message
    from keel.names import Activities, ActivityErrors
    from keel.session import StartSessionInput

SEED_CHUNK_BYTES = 256 * 1024
"""Messages per seeding activity, by size as JSON: well under Temporal's 2 MB payload limit."""


async def call_model(
    session: StartSessionInput, call: CallModelInput, run_messages: list[Message]
) -> CallModelResult:
    """Run the LLM activity with the agent's model, then its fallbacks until one answers.

    A model falls back once its attempts are spent, or at once when its circuit
    breaker is open (a non-retryable `CircuitOpen` raised inside the activity).

    Args:
        session: The session's input (task queue, agent).
        call: The step, carrying only the messages the store may lack.
        run_messages: Every message of this run, to re-seed a store that lost them.
    """
    try:
        return await _reseeding(session, call, run_messages)
    except ActivityError as err:
        # Asked only once a model has failed with fallbacks to go to: sessions whose
        # models never fail (and every history from before) record no marker for it.
        if not _falls_back(err, session) or not patched(MODEL_FALLBACK_PATCH):
            raise
        failure = err
    for name, model in session.agent.fallbacks.items():
        cause = failure.cause or failure
        workflow.logger.warning("model %s failed (%s); trying %s", call.model_name, cause, name)
        fallback = call.model_copy(update={"model": model, "model_name": name})
        try:
            return await _reseeding(session, fallback, run_messages)
        except ActivityError as err:
            if not _falls_back(err, session):
                raise
            failure = err
    raise failure


def _falls_back(err: ActivityError, session: StartSessionInput) -> bool:
    """Whether a failed model call goes on to the agent's fallbacks: not when cancelled."""
    return bool(session.agent.fallbacks) and not is_cancelled_exception(err)


async def _reseeding(
    session: StartSessionInput, call: CallModelInput, run_messages: list[Message]
) -> CallModelResult:
    """Run the LLM activity; if the store lost the transcript, re-seed it and run again."""
    try:
        return await _execute(session, call)
    except ActivityError as err:
        if not (
            isinstance(err.cause, ApplicationError)
            and err.cause.type == ActivityErrors.PREFIX_MISSING
        ):
            raise
    # The store lost what it held (or is new): hand it everything this run knows.
    workflow.logger.warning("transcript store lacks the prefix; re-seeding it")
    if not patched(CHUNKED_RESEED_PATCH):
        first = run_messages[0].seq if run_messages else call.upto_seq
        reseed = {"upto_seq": first, "new_messages": run_messages, "reseed": True}
        return await _execute(session, call.model_copy(update=reseed))
    for chunk in chunks(run_messages, SEED_CHUNK_BYTES):
        await _options.run_activity(
            Activities.SEED_TRANSCRIPT,
            SeedTranscriptInput(session=call.session, messages=chunk, owner=call.owner),
            SeedTranscriptResult,
            _options.SEED_TRANSCRIPT,
            task_queue=session.activities_task_queue,
            summary=f"re-seed {len(chunk)} messages from seq {chunk[0].seq}",
        )
    return await _execute(session, call.model_copy(update={"reseed": True}))


def model_task_queue(model: ModelConfig) -> str:
    """Where a model's calls run: its own queue (a GPU worker's), else the session's own.

    On the session's queue the worker that runs the workflow task also takes the
    call, eagerly: Temporal hands it over with the task's completion, no matching.
    """
    return model.task_queue or workflow.info().task_queue


def chunks(messages: list[Message], max_bytes: int) -> list[list[Message]]:
    """`messages` in order, cut into runs of at most `max_bytes` as JSON (one at least each)."""
    out: list[list[Message]] = []
    size = 0
    for message in messages:
        length = len(message.model_dump_json())
        if not out or size + length > max_bytes:
            out.append([])
            size = 0
        out[-1].append(message)
        size += length
    return out


async def _execute(session: StartSessionInput, call: CallModelInput) -> CallModelResult:
    model = call.model
    return await _options.run_activity(
        Activities.CALL_MODEL,
        call,
        CallModelResult,
        _options.model_call(model),
        task_queue=model_task_queue(model),
        summary=f"llm {model.provider}/{model.model or session.agent.model_name} step {call.step}",
    )
