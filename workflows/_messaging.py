"""Built-in messaging tools: `ask_session` (request/response) and `publish` (topics)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.messaging import (
        ASK_SESSION,
        PUBLISH,
        AskSessionInput,
        PublishInput,
        TopicMessage,
    )
    from activities.providers import ToolSpec
    from activities.tools import CallToolResult
    from keel.messages import ToolCall
    from keel.session import StartSessionInput

ASK_TIMEOUT = timedelta(minutes=30)
"""The other session may itself call tools or wait for an approval."""
PUBLISH_TIMEOUT = timedelta(minutes=1)
RETRY = RetryPolicy(maximum_attempts=3)

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
            "properties": {"topic": {"type": "string"}, "message": {"type": "string"}},
            "required": ["topic", "message"],
        },
    ),
}


def messaging_specs(tools: list[str]) -> list[ToolSpec]:
    """Specs of the messaging tools an agent lists."""
    return [MESSAGING_TOOLS[name] for name in tools if name in MESSAGING_TOOLS]


async def run_messaging_tool(
    session: StartSessionInput, turn_id: str, call: ToolCall
) -> CallToolResult:
    """Run `ask_session` or `publish` for the model."""
    args = call.arguments
    if not isinstance(args.get("message"), str) or not args["message"]:
        return CallToolResult(content="'message' must be a non-empty string", is_error=True)
    # Stable across retries and replays: receivers deduplicate on it.
    key = f"{workflow.info().workflow_id}/{turn_id}/{call.id}"
    if call.name == "ask_session":
        if not isinstance(args.get("session_id"), str):
            return CallToolResult(content="'session_id' must be a string", is_error=True)
        return await workflow.execute_activity(
            ASK_SESSION,
            AskSessionInput(
                tenant=session.tenant,
                session_id=args["session_id"],
                message=args["message"],
                idempotency_key=key,
            ),
            result_type=CallToolResult,
            start_to_close_timeout=ASK_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=RETRY,
            task_queue=session.activities_task_queue,
            summary=f"ask session {args['session_id']}",
        )
    if not isinstance(args.get("topic"), str) or not args["topic"]:
        return CallToolResult(content="'topic' must be a non-empty string", is_error=True)
    return await workflow.execute_activity(
        PUBLISH,
        PublishInput(
            tenant=session.tenant,
            message=TopicMessage(
                message_id=key,
                topic=args["topic"],
                text=args["message"],
                from_session=workflow.info().workflow_id.rsplit("/", 1)[-1],
            ),
        ),
        result_type=CallToolResult,
        start_to_close_timeout=PUBLISH_TIMEOUT,
        retry_policy=RETRY,
        task_queue=session.activities_task_queue,
        summary=f"publish to {args['topic']}",
    )
