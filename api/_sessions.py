"""Sessions as the API sees them: start, describe, message and close their workflows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Response
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AppState, Caller
from api.problems import Problem
from api.schemas import ChatAccepted, ChatResponse, SessionOut
from keel.approvals import Approval, ApprovalDecisionInput
from keel.formation import AgentConfig
from keel.session import (
    FINAL_TURN_STATUSES,
    SESSION_WORKFLOW,
    CloseSessionInput,
    SendMessageInput,
    SendMessageResult,
    SessionState,
    TurnResult,
    WaitTurnInput,
    new_session_input,
    session_workflow_id,
)
from keel.temporal import AGENT_ATTR, TENANT_ATTR, TOPICS_ATTR, USER_ATTR, workflow_ui_url

T = TypeVar("T")

# Validator rejections of SessionWorkflow, by ApplicationError type.
_UPDATE_ERRORS = {
    "SessionClosed": (409, "session-closed"),
    "SessionBusy": (409, "session-busy"),
    "InvalidMessage": (422, "invalid-message"),
    "MessageTooLong": (422, "message-too-long"),
    "UnknownTurn": (404, "turn-not-found"),
    "SessionNotFound": (404, "session-not-found"),
    "DuplicateTurn": (409, "duplicate-turn"),
    "UnknownApproval": (404, "approval-not-found"),
    "ApprovalDecided": (409, "approval-decided"),
    "InvalidArguments": (422, "invalid-arguments"),
}


def resolve_agent(state: AppState, name: str | None) -> AgentConfig:
    """The agent named, or the formation's default; 404 if unknown."""
    if name is None:
        return state.formation.default_agent
    try:
        return state.formation.agent(name)
    except KeyError:
        raise Problem(404, f"no agent named {name!r}", type_="agent-not-found") from None


async def start_session(
    state: AppState,
    client: Client,
    caller: Caller,
    *,
    agent: AgentConfig,
    user_id: str,
    metadata: dict[str, Any],
    topics: list[str] | None = None,
) -> SessionOut:
    """Start the workflow of a new session and describe it; 409 past the user's session limit."""
    if caller.limited:
        await _check_session_quota(state, client, caller.tenant, user_id)
    formation = state.formation
    session_id = uuid.uuid4().hex
    workflow_id = session_workflow_id(caller.tenant, session_id)
    start = new_session_input(
        formation,
        agent,
        tenant=caller.tenant,
        user_id=user_id,
        activities_task_queue=state.settings.activities_task_queue,
        session_id=session_id,
    )
    with temporal_errors():
        handle = await client.start_workflow(
            SESSION_WORKFLOW,
            start,
            id=workflow_id,
            task_queue=state.settings.sessions_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TENANT_ATTR, caller.tenant),
                    SearchAttributePair(USER_ATTR, user_id),
                    SearchAttributePair(AGENT_ATTR, agent.name),
                    SearchAttributePair(TOPICS_ATTR, topics or []),
                ]
            ),
            memo={"metadata": metadata},
            static_summary=f"session with {agent.name} for {user_id}",
        )
    return session_out(
        state,
        workflow_id,
        handle.result_run_id,
        active=True,
        user_id=user_id,
        agent=agent.name,
        metadata=metadata,
        created_at=datetime.now(UTC),
    )


def session_out(
    state: AppState,
    workflow_id: str,
    run_id: str | None,
    *,
    active: bool,
    user_id: str,
    agent: str,
    metadata: dict[str, Any],
    created_at: datetime,
) -> SessionOut:
    """A session's JSON shape."""
    settings = state.settings
    return SessionOut(
        id=workflow_id.rsplit("/", 1)[-1],
        agent=agent,
        user_id=user_id,
        status="active" if active else "closed",
        created_at=created_at,
        workflow_id=workflow_id,
        run_id=run_id,
        temporal_ui_url=workflow_ui_url(
            settings.temporal_ui_url, settings.namespace, workflow_id, run_id
        ),
        metadata=metadata,
    )


async def from_execution(state: AppState, execution: WorkflowExecution) -> SessionOut:
    """A session's JSON shape from a visibility record or a describe."""
    attrs = execution.typed_search_attributes
    memo = await execution.memo()
    return session_out(
        state,
        execution.id,
        execution.run_id,
        active=execution.status == WorkflowExecutionStatus.RUNNING,
        user_id=attrs.get(USER_ATTR) or "",
        agent=attrs.get(AGENT_ATTR) or "",
        metadata=memo.get("metadata") or {},
        created_at=execution.start_time,
    )


async def describe_session(
    state: AppState, client: Client, caller: Caller, session_id: str
) -> tuple[SessionOut, WorkflowHandle[Any, Any]]:
    """The session and a handle on its latest run; 404 if the caller cannot see it."""
    handle = client.get_workflow_handle(session_workflow_id(caller.tenant, session_id))
    with temporal_errors():
        description = await handle.describe()
    if description.workflow_type != SESSION_WORKFLOW:
        raise _not_found(session_id)
    session = await from_execution(state, description)
    if not caller.can_see(session.user_id):
        # 404, not 403: a caller must not learn that another user's id exists.
        raise _not_found(session_id)
    return session, handle


async def target(
    state: AppState,
    client: Client,
    caller: Caller,
    *,
    session_id: str | None,
    agent: str | None,
    user_id: str | None,
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """The session named (not looked up: the workflow checks the caller when it is
    sent a message), or a new one with `agent` (the default agent when None)."""
    if session_id:
        return session_id, client.get_workflow_handle(
            session_workflow_id(caller.tenant, session_id)
        )
    session = await start_session(
        state,
        client,
        caller,
        agent=resolve_agent(state, agent),
        user_id=caller.owner_for(user_id),
        metadata={},
    )
    return session.id, client.get_workflow_handle(session.workflow_id)


def addressed(caller: Caller, message: SendMessageInput) -> SendMessageInput:
    """`message` with a turn id of the API's choosing and, for a caller bound to a user,
    that user, so the workflow refuses a session that is not theirs."""
    return message.model_copy(
        update={
            "turn_id": message.turn_id or uuid.uuid4().hex,
            "user_id": caller.user_id if caller.user_given else None,
        }
    )


async def deliver(
    handle: WorkflowHandle[Any, Any],
    session_id: str,
    message: SendMessageInput,
    *,
    wait_s: float | None,
    response: Response,
) -> ChatResponse | ChatAccepted:
    """Send `message`; the turn's outcome if it ends within `wait_s`, else 202 and its URL.

    Waiting is one `chat` update (queue and wait), not `send_message` then
    `wait_turn`: a sync turn costs one round trip to the workflow, not two.
    """
    assert message.turn_id is not None, "address the message first"
    offset: int | None = None
    if wait_s is None:
        offset = (await send_message(handle, message)).stream_offset
    else:
        try:
            result = await asyncio.wait_for(_chat(handle, message), wait_s)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # Past `wait_s`. The update call, cancelled by the timeout, may say so
            # in its own words rather than as a CancelledError.
            pass
        else:
            return chat_response(session_id, result)
    accepted = ChatAccepted(
        session_id=session_id,
        turn_id=message.turn_id,
        status="queued",
        url=f"/v1/sessions/{session_id}/turns/{message.turn_id}",
        stream_offset=offset,
    )
    response.status_code = 202
    response.headers["Location"] = accepted.url
    return accepted


async def _chat(handle: WorkflowHandle[Any, Any], message: SendMessageInput) -> TurnResult:
    result = await _update(
        lambda: handle.execute_update("chat", message, result_type=TurnResult), handle
    )
    if result.status in FINAL_TURN_STATUSES:
        return result
    assert message.turn_id is not None
    return await wait_turn(handle, message.turn_id)  # the session continued as new


async def send_message(
    handle: WorkflowHandle[Any, Any], message: SendMessageInput
) -> SendMessageResult:
    """Queue a user message; the workflow's validator may refuse it."""
    return await _update(
        lambda: handle.execute_update("send_message", message, result_type=SendMessageResult),
        handle,
    )


async def wait_turn(handle: WorkflowHandle[Any, Any], turn_id: str) -> TurnResult:
    """Wait for a turn to end, following the session across continue-as-new."""
    while True:
        result = await _update(
            lambda: handle.execute_update(
                "wait_turn", WaitTurnInput(turn_id=turn_id), result_type=TurnResult
            ),
            handle,
        )
        if result.status in FINAL_TURN_STATUSES:
            return result


async def respond_to_approval(
    handle: WorkflowHandle[Any, Any], decision: ApprovalDecisionInput
) -> Approval:
    """Decide an approval; the workflow refuses unknown or decided ids and bad arguments."""
    return await _update(
        lambda: handle.execute_update("respond_to_approval", decision, result_type=Approval),
        handle,
    )


async def close_session(handle: WorkflowHandle[Any, Any]) -> None:
    """Close a session; 409 if it already is."""
    await _update(lambda: handle.execute_update("close", CloseSessionInput()), handle)


async def query_state(handle: WorkflowHandle[Any, Any]) -> SessionState:
    """The workflow's `state` query."""
    with temporal_errors():
        return await handle.query("state", result_type=SessionState)


def chat_response(session_id: str, result: TurnResult) -> ChatResponse:
    """A turn's outcome in the API's shape."""
    return ChatResponse(session_id=session_id, **result.model_dump())


async def _update(
    call: Callable[[], Coroutine[Any, Any, T]], handle: WorkflowHandle[Any, Any]
) -> T:
    try:
        with temporal_errors():
            return await call()
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in _UPDATE_ERRORS:
            status, slug = _UPDATE_ERRORS[cause.type]
            raise Problem(status, cause.message, type_=slug) from err
        raise
    except Problem as problem:
        if problem.status != 404:
            raise
        # An update to a finished workflow: the session exists but is closed.
        try:
            await handle.describe()
        except RPCError:
            raise problem from None
        raise Problem(409, "the session is closed", type_="session-closed") from None


@contextmanager
def temporal_errors() -> Iterator[None]:
    """Map Temporal RPC errors to problems, by status code (never by message text)."""
    try:
        yield
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Problem(404, "no such session", type_="session-not-found") from exc
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise Problem(503, "Temporal is not reachable", type_="temporal-unavailable") from exc
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            raise Problem(409, "a session with this id exists", type_="session-exists") from exc
        raise


async def _check_session_quota(state: AppState, client: Client, tenant: str, user_id: str) -> None:
    """Refuse a new session to a user at `max_sessions_per_user` active ones.

    Counted in Temporal's visibility store, which lags writes by a moment, so
    sessions started at the same instant may pass the limit by a few.
    """
    limit = state.settings.max_sessions_per_user
    if not limit:
        return
    query = (
        f"WorkflowType = '{SESSION_WORKFLOW}' AND {TENANT_ATTR.name} = '{tenant}'"
        f" AND {USER_ATTR.name} = '{user_id}' AND ExecutionStatus = 'Running'"
    )
    with temporal_errors():
        active = (await client.count_workflows(query)).count
    if active >= limit:
        raise Problem(
            409,
            f"this user has {active} active sessions, the limit is {limit}; close one first",
            type_="too-many-sessions",
        )


def _not_found(session_id: str) -> Problem:
    return Problem(404, f"no session {session_id!r}", type_="session-not-found")
