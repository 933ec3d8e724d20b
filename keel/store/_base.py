"""The transcript store's contract, shared by the SQLite and (later) PostgreSQL back ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keel.messages import Message


class TranscriptStore(Protocol):
    """Messages of every session, keyed by `(session, seq)`.

    The session key is the workflow id (`keel/{tenant}/{session_id}`), so two
    tenants never share rows. Writes are upserts by `(session, seq)`: an
    activity retried after a crash rewrites the same rows instead of adding new
    ones.
    """

    async def upsert(self, session: str, messages: Sequence[Message]) -> None:
        """Insert or replace messages."""
        ...

    async def window(self, session: str, *, before_seq: int, limit: int) -> list[Message]:
        """Up to `limit` messages with `seq < before_seq`, oldest first."""
        ...

    async def messages(
        self, session: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Message]:
        """Messages with `seq > after_seq`, oldest first (for the API)."""
        ...

    async def turn_messages(self, session: str, turn_id: str) -> list[Message]:
        """The messages of one turn, oldest first."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
