"""A session's workflow as a typed client: the one way the API, activities, tests and
benchmarks talk to a `SessionWorkflow`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from keel.approvals import Approval, ApprovalDecisionInput
from keel.contracts.messaging import TopicMessage
from keel.names import Queries, Signals, Updates
from keel.plans import Plan, PlanDecisionInput
from keel.session import (
    FINAL_TURN_STATUSES,
    CancelTurnInput,
    CancelTurnResult,
    CloseSessionInput,
    CloseSessionResult,
    SendMessageInput,
    SendMessageResult,
    SessionResult,
    SessionState,
    TurnResult,
    WaitTurnInput,
    session_id_of,
    session_workflow_id,
)


class SessionRejected(Exception):
    """A session's handler refused the request.

    Args:
        type: one of `keel.names.Rejections`: what to map it by, never the message.
        message: why, in words a caller may show.
        details: what the refusal carries besides (an `ApprovalDecided` names the
            decision that stands); empty when it carries nothing.
    """

    def __init__(self, type: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.details = details or {}


class SessionHandle:
    """Updates, queries and signals of one session, with their input and result types.

    Rejections by the workflow raise `SessionRejected`; Temporal's own failures
    (`RPCError` for a session that does not exist or a server that cannot be
    reached) pass through unchanged.
    """

    def __init__(self, client: Client, workflow_id: str) -> None:
        self.workflow: WorkflowHandle[Any, Any] = client.get_workflow_handle(
            workflow_id, result_type=SessionResult
        )
        """The latest run's handle, for what this class does not wrap (describe, streams)."""

    @classmethod
    def of(cls, client: Client, tenant: str, session_id: str) -> SessionHandle:
        """The handle of a tenant's session."""
        return cls(client, session_workflow_id(tenant, session_id))

    @property
    def id(self) -> str:
        """The workflow id."""
        return self.workflow.id

    @property
    def session_id(self) -> str:
        """The session id inside the workflow id."""
        return session_id_of(self.workflow.id)

    async def send_message(
        self, message: SendMessageInput, *, update_id: str | None = None
    ) -> SendMessageResult:
        """Queue a message as a turn; answers once it is queued.

        Args:
            message: the message.
            update_id: Temporal answers a repeated id with the first call's outcome.
        """
        return await self._update(
            Updates.SEND_MESSAGE, message, SendMessageResult, update_id=update_id
        )

    async def chat(self, message: SendMessageInput, *, update_id: str | None = None) -> TurnResult:
        """Queue a message and wait for its turn to end, across continue-as-new."""
        result = await self._update(Updates.CHAT, message, TurnResult, update_id=update_id)
        if result.status in FINAL_TURN_STATUSES:
            return result
        return await self.wait_turn(result.turn_id)  # the run continued as new meanwhile

    async def wait_turn(self, turn_id: str) -> TurnResult:
        """Wait for a turn to end, following the session across continue-as-new."""
        while True:
            result = await self._update(
                Updates.WAIT_TURN, WaitTurnInput(turn_id=turn_id), TurnResult
            )
            if result.status in FINAL_TURN_STATUSES:
                return result

    async def close(self, reason: str | None = None) -> CloseSessionResult:
        """Close the session: queued turns are cancelled, a running one finishes first."""
        return await self._update(
            Updates.CLOSE, CloseSessionInput(reason=reason), CloseSessionResult
        )

    async def cancel_turn(self, cancel: CancelTurnInput) -> CancelTurnResult:
        """Cancel a queued or running turn; it ends `cancelled` (follow it with `wait_turn`).

        An unknown turn is refused as `UnknownTurn`, one that ended as `TurnEnded`.
        """
        return await self._update(Updates.CANCEL_TURN, cancel, CancelTurnResult)

    async def respond_to_approval(
        self, decision: ApprovalDecisionInput, *, update_id: str | None = None
    ) -> Approval:
        """Decide an approval; unknown or decided ids and bad arguments are rejected."""
        return await self._update(
            Updates.RESPOND_TO_APPROVAL, decision, Approval, update_id=update_id
        )

    async def decide_plan(
        self, decision: PlanDecisionInput, *, update_id: str | None = None
    ) -> Plan:
        """Decide a proposed plan; unknown or decided plans and invalid steps are rejected."""
        return await self._update(Updates.DECIDE_PLAN, decision, Plan, update_id=update_id)

    async def signal_approval(self, decision: ApprovalDecisionInput) -> None:
        """Decide an approval by signal (the Temporal CLI's way); a stale id is ignored."""
        await self.workflow.signal(Signals.APPROVAL, decision)

    async def deliver_topic_message(self, message: TopicMessage) -> None:
        """Hand a topic's message to this subscriber; it drops ids it has seen."""
        await self.workflow.signal(Signals.TOPIC_MESSAGE, message)

    async def result(self) -> SessionResult:
        """Wait for the session to close; what it returns."""
        return await self.workflow.result()

    async def state(self, *, rpc_timeout: timedelta | None = None) -> SessionState:
        """The `state` query. It needs a worker: pass `rpc_timeout` where one may be down."""
        return await self.workflow.query(
            Queries.STATE, result_type=SessionState, rpc_timeout=rpc_timeout
        )

    async def _update(
        self, name: str, arg: object, result_type: type[Any], *, update_id: str | None = None
    ) -> Any:
        try:
            return await self.workflow.execute_update(
                name, arg, id=update_id, result_type=result_type
            )
        except WorkflowUpdateFailedError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.type:
                details = err.cause.details
                first = details[0] if details and isinstance(details[0], dict) else None
                raise SessionRejected(err.cause.type, err.cause.message, first) from err
            raise
