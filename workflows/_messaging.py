"""Built-in messaging tools: `ask_session` (request/response) and `publish` (topics)."""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow

from workflows import _options
from workflows._patches import ASK_CYCLE_PATCH, patched
from workflows._step import Step

with workflow.unsafe.imports_passed_through():
    from keel.contracts.llm import ToolSpec
    from keel.contracts.messaging import (
        TOPIC_MAX_CHARS,
        AskSessionInput,
        PublishInput,
        TopicMessage,
    )
    from keel.contracts.tools import CallToolResult
    from keel.messages import ToolCall
    from keel.names import Activities
    from keel.session import StartSessionInput, session_id_of, session_workflow_id


MESSAGING_TOOLS: dict[str, ToolSpec] = {
    "ask_session": ToolSpec(
        name="ask_session",
        description="Send a message to another session and get its answer.",
        parameters={
            "type": "object",
            "properties": {
                "session_id": {"type": "string", "description": "The other session's id."},
                "message": {"type": "string"},
            },
            "required": ["session_id", "message"],
        },
    ),
    "publish": ToolSpec(
        name="publish",
        description="Publish a message to every session subscribed to a topic.",
        parameters={
            "type": "object",
            "properties": {
                "topic": {"type": "string", "minLength": 1, "maxLength": TOPIC_MAX_CHARS},
                "message": {"type": "string"},
            },
            "required": ["topic", "message"],
        },
    ),
}


def messaging_specs(tools: list[str]) -> list[ToolSpec]:
    """Specs of the messaging tools an agent lists."""
    return [MESSAGING_TOOLS[name] for name in tools if name in MESSAGING_TOOLS]


async def run_messaging_tool(
    session: StartSessionInput, step: Step, call: ToolCall
) -> CallToolResult:
    """Run `ask_session` or `publish` for the model; bad arguments are its tool error."""
    try:
        if call.name == "ask_session":
            return await _ask(session, step, call)
        return await _publish(session, step, call)
    except (_BadArguments, ValidationError) as err:
        # Checked here, in workflow code: an exception would fail the workflow
        # task on every retry and wedge the session.
        reason = str(err) if isinstance(err, _BadArguments) else _first_error(err)
        return CallToolResult(content=f"invalid arguments for {call.name}: {reason}", is_error=True)


async def _ask(session: StartSessionInput, step: Step, call: ToolCall) -> CallToolResult:
    target_id = _text(call, "session_id")
    message = _text(call, "message")
    me = workflow.info().workflow_id
    target = session_workflow_id(session.tenant, target_id)
    if (target == me or target in step.ask_chain) and patched(ASK_CYCLE_PATCH):
        # It could answer only after this turn, which waits for its answer.
        reason = "that is this session" if target == me else "it is waiting for this session"
        return _refused(target_id, f"{reason}, so neither could go on")
    return await _options.run_activity(
        Activities.ASK_SESSION,
        AskSessionInput(
            tenant=session.tenant,
            session_id=target_id,
            message=message,
            # Stable across retries and replays: the receiver deduplicates on it.
            idempotency_key=step.key(call),
            from_session=me,
            # Like any caller bound to a user, the asker reaches only that user's sessions.
            user_id=None if session.sees_all_users else session.user_id,
            chain=[*step.ask_chain, me],
        ),
        CallToolResult,
        _options.ASK_SESSION,
        task_queue=session.activities_task_queue,
        summary=f"ask session {target_id}",
    )


async def _publish(session: StartSessionInput, step: Step, call: ToolCall) -> CallToolResult:
    message = TopicMessage(
        message_id=step.key(call),
        topic=_text(call, "topic"),
        text=_text(call, "message"),
        from_session=session_id_of(workflow.info().workflow_id),
    )
    return await _options.run_activity(
        Activities.PUBLISH,
        PublishInput(tenant=session.tenant, message=message),
        CallToolResult,
        _options.PUBLISH,
        task_queue=session.activities_task_queue,
        summary=f"publish to {message.topic}",
    )


class _BadArguments(Exception):
    """A messaging tool call whose arguments do not fit its schema."""


def _text(call: ToolCall, name: str) -> str:
    value = call.arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _BadArguments(f"{name!r} must be a non-empty string")
    return value


def _refused(target_id: str, reason: str) -> CallToolResult:
    return CallToolResult(content=f"cannot ask session {target_id!r}: {reason}", is_error=True)


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "arguments"
    return f"{field!r}: {first['msg']}"
