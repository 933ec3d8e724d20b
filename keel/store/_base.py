"""The transcript store's contract, shared by the SQLite and PostgreSQL back ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keel.idempotency import IdempotencyRecord, StoredResponse
from keel.messages import Message, Summary, Usage, UsageTotal
from keel.store._usage import CallUsage, UsageQuery

MAX_SEQ = 2**31 - 1
"""The largest message sequence number there can be: PostgreSQL keeps `seq` as an `INTEGER`
(32 bits), so a larger one in a query fails in the driver instead of matching nothing."""


@dataclass(frozen=True)
class CopiedPrefix:
    """What `TranscriptStore.copy_prefix` copied."""

    messages: int
    """Messages of the prefix (copied now or by an earlier call)."""
    summary_upto: int
    """The seq the copied summary covers messages up to; 0 when none was copied."""


def forked_copy(message: Message) -> Message:
    """A message as a fork holds it: the same, without the tokens of the call that wrote it.

    Tokens count once, in the session that spent them: a fork's usage (and any sum over
    a user's sessions) counts only its own model calls.
    """
    return message.model_copy(update={"usage": None})


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

    async def truncate(self, session: str, *, from_seq: int) -> int:
        """Delete the messages with `seq >= from_seq` and the summaries reaching past
        `from_seq` (a cancelled turn's, rolled back); returns rows deleted. Idempotent."""
        ...

    async def window(self, session: str, *, before_seq: int, limit: int) -> list[Message]:
        """Up to `limit` messages with `seq < before_seq`, oldest first."""
        ...

    async def messages(
        self, session: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Message]:
        """Messages with `seq > after_seq`, oldest first (for the API).

        `after_seq` is at most `MAX_SEQ`; the API refuses larger ones (422).
        """
        ...

    async def turn_messages(self, session: str, turn_id: str) -> list[Message]:
        """The messages of one turn, oldest first."""
        ...

    async def usage(self, session: str, *, from_seq: int = 0) -> Usage:
        """The tokens (and cost) of the messages with `seq >= from_seq`, summed: each model
        call's answer, and each delegation's result (its specialist's tokens)."""
        ...

    async def record_usage(self, call: CallUsage) -> None:
        """Insert or replace one model call's row in the usage ledger (by `call.call`)."""
        ...

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotal]:
        """The ledger's calls of `query`, summed per group, costliest first."""
        ...

    async def last_activity(self, sessions: Sequence[str]) -> dict[str, datetime]:
        """When each session's latest message was written; sessions with none are left out.

        One query for all of them (a page of the session list), by the key's latest seq.
        """
        ...

    async def register_session(
        self, session: str, *, tenant: str, user_id: str, formation: str
    ) -> None:
        """Record whose session this is, so it can be forgotten; later calls change nothing."""
        ...

    async def copy_prefix(
        self, source: str, target: str, *, upto_seq: int, tenant: str, user_id: str, formation: str
    ) -> CopiedPrefix:
        """Copy `source`'s messages before `upto_seq` into `target`, in one transaction.

        With them go the references they name and `source`'s latest summary that
        covers no message past the prefix, each copy as `forked_copy` makes it;
        `target` is registered to its owner (`register_session`). Idempotent: rows
        `target` already has are kept as they are.
        """
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

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, live_after: datetime
    ) -> IdempotencyRecord | None:
        """Insert `record` unless its key has a record created after `live_after`.

        Returns that live record, or None when `record` went in (an expired one
        with the same key is replaced). Atomic across processes: of two claims
        of one key at once, one inserts and the other gets its record. Now and
        then (see `keel.idempotency.PurgeClock`) deletes expired records too.
        """
        ...

    async def finish_idempotency(self, record: IdempotencyRecord, response: StoredResponse) -> None:
        """Mark a `started` record `done` with the answer to replay; a done one stays as it is."""
        ...

    async def purge_idempotency(self, *, created_before: datetime) -> int:
        """Delete the records created before `created_before`; returns how many."""
        ...

    async def delete_user_idempotency(self, tenant: str, user_id: str) -> int:
        """Delete a user's records (their stored answers hold message text); returns how many."""
        ...

    async def cached_answer(self, key: str, *, now: datetime) -> str | None:
        """The response cache's answer under `key`, unless it expired by `now`."""
        ...

    async def cache_answer(self, key: str, answer: str, *, expires_at: datetime) -> None:
        """Keep a response cache answer (JSON text) under `key` until `expires_at`; expired
        answers are deleted as new ones come."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
