"""Temporal's failures and a session's refusals as HTTP problems: mapped by type and status
code, never by message text."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from keel.names import Rejections
from keel.session_handle import SessionRejected

REJECTIONS: dict[str, tuple[int, str]] = {
    Rejections.SESSION_CLOSED: (409, "session-closed"),
    Rejections.SESSION_BUSY: (409, "session-busy"),
    Rejections.QUEUE_FULL: (429, "session-queue-full"),
    Rejections.INVALID_MESSAGE: (422, "invalid-message"),
    Rejections.MESSAGE_TOO_LONG: (422, "message-too-long"),
    Rejections.UNKNOWN_TURN: (404, "turn-not-found"),
    Rejections.TURN_ENDED: (409, "turn-ended"),
    Rejections.SESSION_NOT_FOUND: (404, "session-not-found"),
    Rejections.DUPLICATE_TURN: (409, "duplicate-turn"),
    Rejections.UNKNOWN_APPROVAL: (404, "approval-not-found"),
    Rejections.APPROVAL_DECIDED: (409, "approval-decided"),
    Rejections.INVALID_ARGUMENTS: (422, "invalid-arguments"),
    Rejections.UNKNOWN_PLAN: (404, "plan-not-found"),
    Rejections.PLAN_DECIDED: (409, "plan-decided"),
    Rejections.INVALID_PLAN: (422, "invalid-plan"),
}
"""Each refusal of a session's handlers, as (status, problem type)."""

QUEUE_FULL_RETRY_S = 5


@contextmanager
def temporal_errors() -> Iterator[None]:
    """Map Temporal RPC errors to problems, by status code."""
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


@contextmanager
def session_errors() -> Iterator[None]:
    """Map a session's refusals and Temporal's failures of a call to it to problems."""
    try:
        with temporal_errors():
            yield
    except SessionRejected as err:
        if err.type not in REJECTIONS:
            raise
        status, slug = REJECTIONS[err.type]
        headers = {"Retry-After": str(QUEUE_FULL_RETRY_S)} if status == 429 else None
        extra = _extension_members(err)
        raise Problem(status, err.message, type_=slug, headers=headers, **extra) from err


DECIDED_MEMBERS = {
    "approval_status": "status",
    "decision": "decision",
    "decided_by": "decided_by",
    "reviewer": "reviewer",
}
"""What a 409 `approval-decided` adds (member: the approval's field): the decision that
stands, so a client can say "already approved by ann". The approval's `status` goes as
`approval_status`: RFC 9457 keeps `status` for the HTTP status."""


def _extension_members(err: SessionRejected) -> dict[str, object]:
    """The RFC 9457 extension members of a refusal: only those named here, never others."""
    if err.type != Rejections.APPROVAL_DECIDED:
        return {}
    return {member: err.details.get(field) for member, field in DECIDED_MEMBERS.items()}


def session_not_found(session_id: str) -> Problem:
    """The answer for a session that does not exist or that the caller may not see."""
    return Problem(404, f"no session {session_id!r}", type_="session-not-found")
