"""`/v1/usage`: tokens and cost of model calls, summed per session, user, agent or model."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.deps import CurrentCaller, State
from api.problems import problem_responses
from api.schemas import UserIdQuery
from keel.session import session_id_of
from keel.store import UsageQuery
from keel.wire import UsageReport

router = APIRouter(prefix="/v1/usage", tags=["usage"])
MOMENT_MAX_LENGTH = 64
"""Longer than any RFC 3339 time with microseconds and an offset."""
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def _moment(value: object) -> object:
    """An RFC 3339 time (`2026-12-07T09:00:00Z`, `…+01:00`) as an aware UTC datetime.

    Parsed here rather than by pydantic, which also takes numbers as Unix times
    (`0.5`) and times without an offset, neither of which the schema's `date-time` is.
    """
    if not isinstance(value, str):
        return value
    match = _RFC3339.fullmatch(value) if len(value) <= MOMENT_MAX_LENGTH else None
    if match is None:
        raise ValueError("must be an RFC 3339 date-time, such as 2026-12-07T09:00:00Z")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, utc, sign, offset_h, offset_m = match.groups()[6:]
    offset = timedelta(0)
    if not utc:
        offset = timedelta(hours=int(offset_h), minutes=int(offset_m))
        offset = -offset if sign == "-" else offset
    try:
        # A leap second (23:59:60) counts as the second before it.
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    except ValueError:  # no such day, hour or offset
        raise ValueError("must be an RFC 3339 date-time with a real date and time") from None
    micros = timedelta(microseconds=int((fraction or "0")[:6].ljust(6, "0")))
    try:
        return (moment + micros).astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 in UTC: as far as UTC goes
        edge = datetime.min if moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


Moment = Annotated[datetime | None, BeforeValidator(_moment)]
_MOMENT_SCHEMA = {"maxLength": MOMENT_MAX_LENGTH}


@router.get("", responses=problem_responses(422))
async def usage(
    state: State,
    caller: CurrentCaller,
    group_by: Literal["session", "user", "agent", "model"] = "session",
    since: Annotated[
        Moment,
        Query(
            description="From this time on (RFC 3339, with an offset).",
            json_schema_extra=_MOMENT_SCHEMA,
        ),
    ] = None,
    until: Annotated[
        Moment, Query(description="Before this time.", json_schema_extra=_MOMENT_SCHEMA)
    ] = None,
    user_id: UserIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> UsageReport:
    """Tokens and cost of the caller's model calls in `[since, until)`, from the store
    (an empty range, `until` not after `since`, has none).

    One item per group, costliest first, with the turns the calls belong to. A
    delegated specialist's calls count for the session and turn that delegated. A
    caller that names a user (every client key does) sees only that user's calls;
    an admin key sees its tenant's, or one user's with `user_id`.
    """
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
