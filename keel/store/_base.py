"""The transcript store's contract, shared by the SQLite and PostgreSQL back ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from keel.messages import Message, Summary


class TranscriptStore(Protocol):
    """Messages of every session, keyed by `(session, seq)`, with what hangs off them.

    The session key is the workflow id (`keel/{tenant}/{session_id}`), so two
    tenants never share rows. Writes are upserts by a key the caller derives
    deterministically: an activity retried after a crash rewrites the same rows
    instead of adding new ones.
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

    async def register_session(
        self, session: str, *, tenant: str, user_id: str, formation: str
    ) -> None:
        """Record whose session this is, so it can be forgotten; later calls change nothing."""
        ...

    async def user_sessions(self, tenant: str, user_id: str) -> list[str]:
        """The registered sessions of a user."""
        ...

    async def delete_sessions(self, sessions: Sequence[str]) -> int:
        """Delete sessions with their messages, summaries and references; returns rows deleted."""
        ...

    async def save_summary(self, session: str, summary: Summary) -> None:
        """Insert or replace the summary covering messages before `summary.upto_seq`."""
        ...

    async def latest_summary(self, session: str) -> Summary | None:
        """The summary covering the most messages, if any."""
        ...

    async def put_reference(self, session: str, ref: str, content: str) -> None:
        """Insert or replace content kept out of history under `ref`."""
        ...

    async def get_reference(self, session: str, ref: str) -> str | None:
        """Content stored under `ref` for this session (never another session's)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
