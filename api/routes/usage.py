"""`/v1/usage`: tokens and cost of model calls, summed per session, user, agent or model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from api.deps import CurrentCaller, State
from api.problems import Problem, problem_responses
from api.schemas import UserIdQuery
from keel.session import session_id_of
from keel.store import UsageQuery
from keel.wire import UsageReport

router = APIRouter(prefix="/v1/usage", tags=["usage"])


def _utc(moment: datetime | None) -> datetime | None:
    """A time as UTC; one without an offset is taken as UTC already."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 lies past the last UTC time there is
        raise ValueError("must lie between years 1 and 9999 in UTC") from None


Moment = Annotated[datetime | None, AfterValidator(_utc)]


@router.get("", responses=problem_responses(422))
async def usage(
    state: State,
    caller: CurrentCaller,
    group_by: Literal["session", "user", "agent", "model"] = "session",
    since: Annotated[
        Moment, Query(description="From this time on (ISO 8601; UTC without an offset).")
    ] = None,
    until: Annotated[Moment, Query(description="Before this time.")] = None,
    user_id: UserIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> UsageReport:
    """Tokens and cost of the caller's model calls in `[since, until)`, from the store.

    One item per group, costliest first, with the turns the calls belong to. A
    delegated specialist's calls count for the session and turn that delegated. A
    caller that names a user (every client key does) sees only that user's calls;
    an admin key sees its tenant's, or one user's with `user_id`.
    """
    if since is not None and until is not None and until <= since:
        raise Problem(422, "`until` must come after `since`", type_="invalid-time-range")
    query = UsageQuery(
        tenant=caller.tenant,
        group_by=group_by,
        user_id=caller.user_filter(user_id),
        since=since,
        until=until,
        limit=limit,
    )
    items = await state.store.usage_totals(query)
    if group_by == "session":
        items = [item.model_copy(update={"key": session_id_of(item.key)}) for item in items]
    return UsageReport(group_by=group_by, since=since, until=until, items=items)
