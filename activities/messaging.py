"""Agent-to-agent messaging: ask another session and wait for its answer, or publish to a topic."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities._heartbeat import with_heartbeat
from activities._logging import activity_log_context
from keel.contracts.messaging import AskSessionInput, PublishInput
from keel.contracts.tools import CallToolResult
from keel.messages import final_answer
from keel.names import SESSION_WORKFLOW, Activities, Rejections
from keel.session import AssistantReply, SendMessageInput, TurnResult
from keel.session_handle import SessionHandle, SessionRejected
from keel.store import TranscriptStore
from keel.temporal import FORMATION_ATTR, TENANT_ATTR, TOPICS_ATTR, TaskQueues


class MessagingActivities:
    """Activities that talk to other sessions through the Temporal client.

    Workflows can signal other workflows but cannot send them updates, and a
    request/response needs an update, so these run as activities. They reach only
    sessions of the worker's formation (`queues`): another formation's are none.
    """

    def __init__(self, client: Client, store: TranscriptStore, queues: TaskQueues) -> None:
        self._client = client
        self._store = store
        self._queues = queues

    @activity.defn(name=Activities.ASK_SESSION)
    async def ask_session(self, input: AskSessionInput) -> CallToolResult:
        """Send the message and wait for the turn it starts; refusals become error results."""
        with activity_log_context():
            session = SessionHandle.of(self._client, input.tenant, input.session_id)
            message = SendMessageInput(
                text=input.message, user_id=input.user_id, ask_chain=input.chain
            )
            try:
                if not await self._ours(session):
                    return _unknown(input.session_id)
                sent = await session.send_message(message, update_id=input.idempotency_key)
                result = await with_heartbeat(self._wait(session, sent.turn_id))
            except SessionRejected as err:
                if err.type == Rejections.SESSION_NOT_FOUND:
                    return _unknown(input.session_id)
                return _error(f"session {input.session_id!r} cannot take the message: {err}")
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return _unknown(input.session_id)
                raise  # Temporal unreachable: the activity retries
            if result.message is None:
                return _error(f"session {input.session_id!r} did not answer: {result.error}")
            return CallToolResult(content=result.message.content)

    async def _ours(self, session: SessionHandle) -> bool:
        described = await session.workflow.describe()
        formation = described.typed_search_attributes.get(FORMATION_ATTR)
        return self._queues.owns(formation, described.task_queue)

    async def _wait(self, session: SessionHandle, turn_id: str) -> TurnResult:
        try:
            return await session.wait_turn(turn_id)
        except SessionRejected as err:
            if err.type != Rejections.UNKNOWN_TURN:
                raise
        # It ended just before the session continued as new, and was not carried over.
        answer = final_answer(await self._store.turn_messages(session.id, turn_id))
        if answer is None:
            return TurnResult(turn_id=turn_id, status="failed", error="no answer was stored")
        return TurnResult(
            turn_id=turn_id, status="completed", message=AssistantReply(content=answer.content)
        )

    @activity.defn(name=Activities.PUBLISH)
    async def publish(self, input: PublishInput) -> CallToolResult:
        """Signal every subscribed session; they drop a message id they have seen."""
        with activity_log_context():
            query = (
                f"WorkflowType = '{SESSION_WORKFLOW}' AND ExecutionStatus = 'Running'"
                f" AND {TENANT_ATTR.name} = '{input.tenant}'"
                f" AND {self._queues.visibility_clause()}"
                f" AND {TOPICS_ATTR.name} = '{_quoted(input.message.topic)}'"
            )
            delivered = 0
            async for execution in self._client.list_workflows(query):
                if execution.id.endswith(f"/{input.message.from_session}"):
                    continue  # a session does not hear its own message
                await SessionHandle(self._client, execution.id).deliver_topic_message(input.message)
                delivered += 1
            return CallToolResult(
                content=f"published to {input.message.topic!r}: {delivered} subscribers"
            )


def _unknown(session_id: str) -> CallToolResult:
    # The same words for another user's session as for none: ids are not confirmed.
    return _error(f"there is no session {session_id!r}")


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=text, is_error=True)


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
