"""The usage ledger's shapes: one record per model call, and the totals `GET /v1/usage` sums.

Both back ends keep the same table (`usage`, see their schema modules) and run the
same query, spelled for each by `totals_query`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from keel.messages import COST_DIGITS, Usage, UsageTotal

UsageGroup = Literal["session", "user", "agent", "model"]
_COLUMN: dict[str, str] = {
    "session": "session",
    "user": "user_id",
    "agent": "agent",
    "model": "model",
}
_SESSION_PARTS = 3
"""A session's workflow id is `keel/{tenant}/{session_id}`; a delegated specialist's
continues it with `/{turn}/{step}/{call}` (`keel.contracts.tools.call_key`)."""


@dataclass(frozen=True)
class CallUsage:
    """One model call's tokens, and whom they count for."""

    call: str
    """The call's own name, the same on every retry: `{workflow id}/{turn}/{step}`."""
    session: str
    """The workflow id of the session the call counts for (the one a user started)."""
    turn_id: str
    """That session's turn (the delegating turn, for a specialist's call)."""
    tenant: str
    user_id: str
    agent: str
    model: str
    usage: Usage
    created_at: datetime


def counted_for(workflow_id: str, turn_id: str) -> tuple[str, str]:
    """The session and turn a call of `workflow_id`'s turn `turn_id` counts for.

    A delegated specialist runs as a child whose workflow id starts with the parent's
    and its turn: its tokens are the parent turn's (as the workflow rolls them up).
    """
    parts = workflow_id.split("/")
    if len(parts) <= _SESSION_PARTS or parts[0] != "keel":
        return workflow_id, turn_id
    return "/".join(parts[:_SESSION_PARTS]), parts[_SESSION_PARTS]


@dataclass(frozen=True)
class UsageQuery:
    """Which calls to sum: a tenant's (one user's, when given), in `[since, until)`."""

    tenant: str
    group_by: UsageGroup
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000


def totals_query(
    query: UsageQuery, mark: Callable[[int], str], moment: Callable[[datetime], object]
) -> tuple[str, list[object]]:
    """The SQL that sums `query`'s calls, and its parameters.

    Args:
        query: What to sum.
        mark: The back end's placeholder for the n-th parameter (`?` or `$n`).
        moment: A time as the back end stores it.
    """
    column = _COLUMN[query.group_by]
    where = ["tenant = " + mark(1)]
    params: list[object] = [query.tenant]
    for condition, value in (
        ("user_id = ", query.user_id),
        ("created_at >= ", None if query.since is None else moment(query.since)),
        ("created_at < ", None if query.until is None else moment(query.until)),
    ):
        if value is not None:
            params.append(value)
            where.append(condition + mark(len(params)))
    params.append(query.limit)
    sql = (
        f"SELECT {column}, count(DISTINCT session || '/' || turn_id), sum(prompt_tokens),"
        " sum(completion_tokens), sum(cost_usd), max(CASE WHEN estimated THEN 1 ELSE 0 END)"
        f" FROM usage WHERE {' AND '.join(where)} GROUP BY {column}"
        f" ORDER BY sum(cost_usd) DESC, sum(prompt_tokens) DESC, {column} LIMIT {mark(len(params))}"
    )
    return sql, params


def total_of(row: tuple[object, ...]) -> UsageTotal:
    """A row of `totals_query`'s answer as a total."""
    key, turns, prompt, completion, cost, estimated = row
    return UsageTotal(
        key=str(key),
        turns=int(str(turns)),
        prompt_tokens=int(str(prompt)),
        completion_tokens=int(str(completion)),
        cost_usd=round(float(str(cost)), COST_DIGITS),
        estimated=bool(estimated),
    )
