"""`/v1/approvals`: the approvals inbox, every pending approval across the caller's sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api import _sessions
from api._page_tokens import PAGE_TOKEN_MAX_LENGTH, PAGE_TOKEN_PATTERN
from api._shapes import from_execution, summary_of
from api.deps import CurrentCaller, State, TemporalClient
from api.problems import problem_responses
from keel.approvals import Approval
from keel.temporal import PENDING_APPROVALS_ATTR

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class InboxApproval(Approval):
    """A pending approval, with the session it waits in."""

    session_id: str
    agent: str
    user_id: str


class ApprovalInbox(BaseModel):
    """`GET /v1/approvals`."""

    approvals: list[InboxApproval]
    next_page_token: str | None = None


@router.get("", responses=problem_responses(404))
async def inbox(
    state: State,
    client: TemporalClient,
    caller: CurrentCaller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[
        str | None, Query(pattern=PAGE_TOKEN_PATTERN, max_length=PAGE_TOKEN_MAX_LENGTH)
    ] = None,
) -> ApprovalInbox:
    """Pending approvals of the caller's running sessions (a user's only, with `X-User-Id`).

    One visibility call for up to `limit` sessions that wait (`KeelPendingApprovals > 0`),
    newest session first; each brings every approval its memo lists, the newest request
    first within a page. No session is queried, so this never waits for a worker: an
    approval whose arguments were too large for the memo has `arguments_elided` set
    (read it whole from `GET /v1/sessions/{id}/approvals`).
    """
    query = _sessions.sessions_query(
        state,
        caller.tenant,
        caller.user_filter(None),
        "ExecutionStatus = 'Running'",
        f"{PENDING_APPROVALS_ATTR.name} > 0",
    )
    page = await _sessions.visibility_page(state, client, query, limit=limit, token=page_token)
    approvals: list[InboxApproval] = []
    for execution in page.executions:
        summary = await summary_of(execution)
        if summary is None:  # listed by the attribute, so of a build that mirrors: never
            continue
        session = await from_execution(state, execution)
        approvals += [
            InboxApproval(
                **approval.model_dump(),
                session_id=session.id,
                agent=session.agent,
                user_id=session.user_id,
            )
            for approval in summary.pending_approvals
        ]
    approvals.sort(key=lambda a: a.requested_at, reverse=True)
    return ApprovalInbox(approvals=approvals, next_page_token=page.next_page_token)
