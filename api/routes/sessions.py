"""`/v1/sessions`: create, list, read and close sessions, and read their turns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api import _sessions
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import (
    ID_PATTERN,
    NAME_PATTERN,
    ChatResponse,
    CreateSession,
    SessionDetail,
    SessionId,
    SessionOut,
    SessionPage,
    TurnId,
)
from keel.messages import Usage
from keel.session import SESSION_WORKFLOW, AssistantReply, SessionState, session_workflow_id
from keel.temporal import AGENT_ATTR, TENANT_ATTR, USER_ATTR

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(404, 409))
async def create_session(
    body: CreateSession,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
) -> SessionOut:
    """Start a session with an agent (the formation's default when none is named)."""
    agent = _sessions.resolve_agent(state, body.agent)
    session = await _sessions.start_session(
        state,
        client,
        caller,
        agent=agent,
        user_id=caller.owner_for(body.user_id),
        metadata=body.metadata,
        topics=body.topics,
    )
    response.headers["Location"] = f"/v1/sessions/{session.id}"
    return session


@router.get("")
async def list_sessions(
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    agent: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    status_: Annotated[Literal["active", "closed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> SessionPage:
    """Sessions of the caller's tenant, newest first, from Temporal's visibility store."""
    user = caller.user_filter(user_id)
    clauses = [f"WorkflowType = '{SESSION_WORKFLOW}'", f"{TENANT_ATTR.name} = '{caller.tenant}'"]
    if user:
        clauses.append(f"{USER_ATTR.name} = '{user}'")
    if agent:
        clauses.append(f"{AGENT_ATTR.name} = '{agent}'")
    if status_ == "active":
        clauses.append("ExecutionStatus = 'Running'")
    elif status_ == "closed":
        clauses.append("ExecutionStatus != 'Running'")
    query = " AND ".join(clauses)
    token = state.page_tokens.open(page_token, query) if page_token else None
    try:
        with _sessions.temporal_errors():
            pages = client.list_workflows(query, page_size=limit, next_page_token=token)
            await pages.fetch_next_page()
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise Problem(422, "page_token is not valid any more", type_="invalid-request") from None
    sessions = [await _sessions.from_execution(state, e) for e in pages.current_page or []]
    next_token = pages.next_page_token
    return SessionPage(
        sessions=sessions,
        next_page_token=state.page_tokens.issue(next_token, query) if next_token else None,
    )


@router.get("/{session_id}", responses=problem_responses(404))
async def get_session(
    session_id: SessionId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    after_seq: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> SessionDetail:
    """The session, its messages (from the transcript store), pending approvals and usage."""
    session, handle = await _sessions.describe_session(state, client, caller, session_id)
    live = await _live_state(handle) if session.status == "active" else None
    messages = await state.store.messages(session.workflow_id, after_seq=after_seq, limit=limit)
    return SessionDetail(
        **session.model_dump(),
        messages=messages,
        pending_approvals=live.pending_approvals if live else [],
        usage=live.usage if live else Usage(),
    )


@router.delete("/{session_id}", responses=problem_responses(404, 409))
async def close_session(
    session_id: SessionId, state: State, client: TemporalClient, caller: CurrentCaller
) -> SessionOut:
    """Close the session: a running turn finishes, queued ones are cancelled."""
    session, handle = await _sessions.describe_session(state, client, caller, session_id)
    await _sessions.close_session(handle)
    return session.model_copy(update={"status": "closed"})


@router.get("/{session_id}/turns/{turn_id}", responses=problem_responses(404))
async def get_turn(
    session_id: SessionId,
    turn_id: TurnId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
) -> ChatResponse:
    """A turn's status and result: from the workflow while it is recent, else the store."""
    session, handle = await _sessions.describe_session(state, client, caller, session_id)
    live = await _live_state(handle) if session.status == "active" else None
    for turn in live.turns if live else []:
        if turn.turn_id == turn_id:
            return _sessions.chat_response(session.id, turn)
    stored = await state.store.turn_messages(
        session_workflow_id(caller.tenant, session.id), turn_id
    )
    if not stored:
        raise Problem(404, f"no turn {turn_id!r} in this session", type_="turn-not-found")
    answer = next((m for m in reversed(stored) if m.role == "assistant" and not m.tool_calls), None)
    return ChatResponse(
        session_id=session.id,
        turn_id=turn_id,
        status="completed" if answer else "failed",
        message=AssistantReply(content=answer.content) if answer else None,
    )


async def _live_state(handle: WorkflowHandle[object, object]) -> SessionState | None:
    try:
        return await _sessions.query_state(handle)
    except Problem:
        return None
