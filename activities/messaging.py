"""Agent-to-agent messaging: ask another session and wait for its answer, or publish to a topic."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from activities.tools import CallToolResult
from keel.session import (
    FINAL_TURN_STATUSES,
    SESSION_WORKFLOW,
    SendMessageInput,
    SendMessageResult,
    TurnResult,
    WaitTurnInput,
    session_workflow_id,
)
from keel.temporal import TENANT_ATTR, TOPICS_ATTR

ASK_SESSION = "keel.agents.ask_session"
PUBLISH = "keel.agents.publish"
TOPIC_SIGNAL = "topic_message"


class AskSessionInput(BaseModel):
    """Send a message to another session of the same tenant and wait for its answer."""

    tenant: str
    session_id: str
    message: str
    idempotency_key: str
    """Used as the update id: a retried activity does not send the message twice."""


class TopicMessage(BaseModel):
    """A message on a topic, as its subscribers receive it (the `topic_message` signal)."""

    message_id: str
    topic: str = Field(min_length=1, max_length=128)
    text: str
    from_session: str


class PublishInput(BaseModel):
    """Publish `message` to every running session of `tenant` subscribed to its topic."""

    tenant: str
    message: TopicMessage


class MessagingActivities:
    """Activities that talk to other sessions through the Temporal client.

    Workflows can signal other workflows but cannot send them updates, and a
    request/response needs an update, so these run as activities.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name=ASK_SESSION)
    async def ask_session(self, input: AskSessionInput) -> CallToolResult:
        """Send the message and wait for the turn it starts; errors become error results."""
        with activity_log_context():
            handle = self._client.get_workflow_handle(
                session_workflow_id(input.tenant, input.session_id)
            )
            try:
                sent = await handle.execute_update(
                    "send_message",
                    SendMessageInput(text=input.message),
                    id=input.idempotency_key,
                    result_type=SendMessageResult,
                )
                result = await with_heartbeat(self._wait(handle.id, sent.turn_id))
            except (RPCError, WorkflowUpdateFailedError) as err:
                return CallToolResult(
                    content=f"session {input.session_id!r} cannot take the message: {err}",
                    is_error=True,
                )
            if result.message is None:
                return CallToolResult(
                    content=f"session {input.session_id!r} did not answer: {result.error}",
                    is_error=True,
                )
            return CallToolResult(content=result.message.content)

    async def _wait(self, workflow_id: str, turn_id: str) -> TurnResult:
        handle = self._client.get_workflow_handle(workflow_id)
        while True:  # wait_turn returns early when the session continues as new
            result = await handle.execute_update(
                "wait_turn", WaitTurnInput(turn_id=turn_id), result_type=TurnResult
            )
            if result.status in FINAL_TURN_STATUSES:
                return result

    @activity.defn(name=PUBLISH)
    async def publish(self, input: PublishInput) -> CallToolResult:
        """Signal every subscribed session; they drop a message id they have seen."""
        with activity_log_context():
            query = (
                f"WorkflowType = '{SESSION_WORKFLOW}' AND ExecutionStatus = 'Running'"
                f" AND {TENANT_ATTR.name} = '{input.tenant}'"
                f" AND {TOPICS_ATTR.name} = '{_quoted(input.message.topic)}'"
            )
            delivered = 0
            async for execution in self._client.list_workflows(query):
                if execution.id.endswith(f"/{input.message.from_session}"):
                    continue  # a session does not hear its own message
                await self._client.get_workflow_handle(execution.id).signal(
                    TOPIC_SIGNAL, input.message
                )
                delivered += 1
            return CallToolResult(
                content=f"published to {input.message.topic!r}: {delivered} subscribers"
            )


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
