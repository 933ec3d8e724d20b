"""`/v1/sessions`: create, list, read and close sessions, and read and cancel their turns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response, status
from pydantic import BaseModel
from temporalio.client import Client

from api import _forks, _sessions
from api._idempotency import Idempotent
from api._page_tokens import PAGE_TOKEN_MAX_LENGTH, PAGE_TOKEN_PATTERN
from api._shapes import chat_response, ended_turn, list_items
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import Problem, problem_responses
from api.schemas import (
    AgentQuery,
    ChatResponse,
    CreateSession,
    ForkSession,
    SessionDetail,
    SessionId,
    SessionOut,
    SessionPage,
    TurnId,
    UserIdQuery,
)
from keel.messages import Message
from keel.session import TurnStatus
from keel.store import MAX_SEQ
from keel.temporal import AGENT_ATTR

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_FORK_ALL = ForkSession()
"""A fork request without a body: every turn that has ended."""


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(404, 409))
async def create_session(
    body: CreateSession,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    idempotency: Idempotent,
) -> SessionOut:
    """Start a session with an agent (the formation's default when none is named)."""
    agent = _sessions.resolve_agent(state, body.agent)
    claim = await idempotency.claim(caller, body, "session_id")
    session = await _sessions.start_session(
        state,
        client,
        caller,
        agent=agent,
        user_id=caller.owner_for(body.user_id),
        metadata=body.metadata,
        topics=body.topics,
        session_id=claim.ids["session_id"],
        retried=claim.replayed,
    )
    response.headers["Location"] = f"/v1/sessions/{session.id}"
    return await claim.finish(session, response)


@router.get("", responses=problem_responses(404))
async def list_sessions(
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    user_id: UserIdQuery = None,
    agent: AgentQuery = None,
    status_: Annotated[Literal["active", "closed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[
        str | None, Query(pattern=PAGE_TOKEN_PATTERN, max_length=PAGE_TOKEN_MAX_LENGTH)
    ] = None,
) -> SessionPage:
    """Sessions of the caller's tenant, newest first, from Temporal's visibility store.

    A `page_token` this API did not issue for the same filters, or one Temporal
    no longer knows, names no page: 404 `page-not-found`.
    """
    clauses = []
    if agent:
        clauses.append(f"{AGENT_ATTR.name} = '{agent}'")
    if status_ == "active":
        clauses.append("ExecutionStatus = 'Running'")
    elif status_ == "closed":
        clauses.append("ExecutionStatus != 'Running'")
    query = _sessions.sessions_query(state, caller.tenant, caller.user_filter(user_id), *clauses)
    page = await _sessions.visibility_page(state, client, query, limit=limit, token=page_token)
    return SessionPage(
        sessions=await list_items(state, page.executions), next_page_token=page.next_page_token
    )


@router.get("/{session_id}", responses=problem_responses(404))
async def get_session(
    session_id: SessionId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    after_seq: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> SessionDetail:
    """The session, its messages (from the transcript store), pending approvals and usage.

    Answered by Temporal and the store alone: it never waits for a worker.
    """
    described = await _sessions.describe_session(state, client, caller, session_id)
    session = described.session
    pending = await _sessions.pending_approvals(described)
    usage = await _sessions.session_usage(state, described)
    messages = await state.store.messages(session.workflow_id, after_seq=after_seq, limit=limit)
    return SessionDetail(
        **session.model_dump(), messages=messages, pending_approvals=pending, usage=usage
    )


@router.delete("/{session_id}", responses=problem_responses(404, 409))
async def close_session(
    session_id: SessionId, state: State, client: TemporalClient, caller: CurrentCaller
) -> SessionOut:
    """Close the session: a running turn finishes, queued ones are cancelled."""
    described = await _sessions.describe_session(state, client, caller, session_id)
    await _sessions.session_call(described.handle, described.handle.close())
    return described.session.model_copy(update={"status": "closed"})


@router.post(
    "/{session_id}/fork", status_code=status.HTTP_201_CREATED, responses=problem_responses(404, 409)
)
async def fork_session(
    session_id: SessionId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    idempotency: Idempotent,
    body: ForkSession = _FORK_ALL,
) -> SessionOut:
    """Start a new session whose transcript is a prefix of this one's; this one is untouched.

    The fork has the same user, agent and metadata, and `forked_from`. A prefix
    is made of whole turns (`upto_seq` is a turn's first seq, or the end): any
    other seq is a 409 `fork-point-invalid`, one inside a turn that has not
    ended a 409 `turn-unfinished`. By default it holds every turn that has ended.
    """
    source = await _sessions.describe_session(state, client, caller, session_id)
    claim = await idempotency.claim(caller, body, "session_id")
    forked = await _forks.fork_session(
        state,
        client,
        caller,
        source,
        upto_seq=body.upto_seq,
        session_id=claim.ids["session_id"],
        retried=claim.replayed,
    )
    response.headers["Location"] = f"/v1/sessions/{forked.id}"
    return await claim.finish(forked, response)


@router.get("/{session_id}/turns/{turn_id}", responses=problem_responses(404))
async def get_turn(
    session_id: SessionId,
    turn_id: TurnId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
) -> ChatResponse:
    """A turn's status and result: from the workflow while it runs and a worker answers,
    else from the session's memo and the transcript store (within about a second)."""
    described = await _sessions.describe_session(state, client, caller, session_id)
    session = described.session
    live = await _sessions.live_state(described)
    for turn in live.turns if live else []:
        if turn.turn_id == turn_id:
            return chat_response(session.id, turn)
    stored = await state.store.turn_messages(session.workflow_id, turn_id)
    summary = described.summary.turn(turn_id) if described.summary else None
    # A planner's plan is an answer of its model too: the turn goes on while its plan does.
    planning = described.summary is not None and any(
        p.turn_id == turn_id and p.status in ("proposed", "running")
        for p in described.summary.plans
    )
    ended = (
        None if planning and summary is None else ended_turn(session.id, turn_id, stored, summary)
    )
    if ended is not None:
        return ended
    if live is not None or session.status != "active":
        if stored:  # an old turn that ended without an answer
            return ChatResponse(session_id=session.id, turn_id=turn_id, status="failed")
    elif (status := await _unended_status(client, described, stored, turn_id)) is not None:
        # No worker answers: the turn is known, and has not ended.
        return ChatResponse(session_id=session.id, turn_id=turn_id, status=status)
    raise Problem(404, f"no turn {turn_id!r} in this session", type_="turn-not-found")


class CancelTurn(BaseModel):
    """`POST …/turns/{turn_id}/cancel` (the body is optional)."""

    rollback: bool | None = None
    """Drop the turn's messages from the transcript too; by default as the formation's
    `sessions.on_busy` says (`rollback` rolls back, the others keep them)."""


class CancelAccepted(BaseModel):
    """The cancel is under way: the turn ends `cancelled`, with `turn.cancelled`; poll `url`."""

    session_id: str
    turn_id: str
    status: TurnStatus
    """As the cancel found it: `cancelled` for a queued turn, else its status until its
    model or tool call has stopped (about a second)."""
    url: str


@router.post(
    "/{session_id}/turns/{turn_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(404, 409),
)
async def cancel_turn(
    session_id: SessionId,
    turn_id: TurnId,
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    response: Response,
    body: Annotated[CancelTurn | None, Body()] = None,
) -> CancelAccepted:
    """Cancel a queued or running turn: a model or tool call under way is stopped, its
    pending approvals close as cancelled, and `turn.cancelled` is its last event.

    An unknown turn answers 404 `turn-not-found`, one that has ended 409 `turn-ended`.
    """
    rollback = body.rollback if body else None
    result = await _sessions.cancel_turn(
        state, client, caller, session_id, turn_id, rollback=rollback
    )
    url = f"/v1/sessions/{session_id}/turns/{turn_id}"
    response.headers["Location"] = url
    return CancelAccepted(session_id=session_id, turn_id=turn_id, status=result.status, url=url)


async def _unended_status(
    client: Client, described: _sessions.DescribedSession, stored: list[Message], turn_id: str
) -> TurnStatus | None:
    """What the memo, the store and Temporal's update records say of a turn not yet ended."""
    summary = described.summary
    if summary is not None and (
        any(a.turn_id == turn_id for a in summary.pending_approvals)
        or any(p.turn_id == turn_id and p.status == "proposed" for p in summary.plans)
    ):
        return "awaiting_approval"
    if stored:
        return "running"
    if summary is not None and turn_id in summary.queued_turns:
        return "queued"
    if await _sessions.turn_accepted(client, described.handle.id, turn_id):
        return "queued"
    return None
