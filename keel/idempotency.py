"""Idempotency records: what a request sent with an `Idempotency-Key` chose, and what it answered.

They live in the transcript store, beside the conversations, so every API
process sees the same ones, and a process killed between accepting a request and
answering it leaves behind what its retry needs: the ids it had chosen.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

IdempotencyStatus = Literal["started", "done"]
PURGE_EVERY_S = 600.0
"""How often a store deletes expired records, at most (while requests claim keys)."""


class StoredResponse(BaseModel):
    """A final answer, replayed as it was to a retry with the same key."""

    status_code: int
    body: Any
    """The JSON body."""
    headers: dict[str, str] = Field(default_factory=dict)
    """The headers worth replaying (`Location`)."""


class IdempotencyRecord(BaseModel):
    """One key of one caller on one route.

    Keyed by `(tenant, user_id, route, key)`: two users may send the same key.
    """

    tenant: str
    user_id: str
    route: str
    """The route's method and path template, e.g. `POST /v1/sessions/{session_id}/approvals/…`."""
    key: str
    request_hash: str
    """sha256 of the canonical JSON of the body and the path parameters."""
    ids: dict[str, str] = Field(default_factory=dict)
    """The ids the first request chose (session, turn, update): a retry uses them again."""
    status: IdempotencyStatus = "started"
    response: StoredResponse | None = None
    """Once `done`: the answer to replay."""
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class PurgeClock:
    """Says when a store should delete expired records: at most every `every_s` seconds."""

    def __init__(self, every_s: float = PURGE_EVERY_S) -> None:
        self._every_s = every_s
        self._next = 0.0

    def due(self) -> bool:
        """Whether to purge now; if so, the next purge is `every_s` away."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._every_s
        return True
