"""SQLite transcript store: the default, one file under the data dir shared by API and worker."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keel.idempotency import IdempotencyRecord, PurgeClock, StoredResponse
from keel.messages import Message, Summary, Usage, UsageTotal
from keel.store._base import CopiedPrefix, forked_copy
from keel.store._schema import SQLITE_MIGRATIONS as MIGRATIONS
from keel.store._usage import CallUsage, UsageQuery, total_of, totals_query

_IDEMPOTENCY_COLUMNS = (
    "tenant, user_id, route, idem_key, request_hash, ids, status, response, created_at"
)
_CLAIM_TRIES = 3
_IDEMPOTENCY_KEY = "tenant = ? AND user_id = ? AND route = ? AND idem_key = ?"
_SESSION_TABLES = ("messages", "summaries", "refs", "sessions", "usage")
_REGISTER = (
    "INSERT INTO sessions (session, tenant, user_id, formation, created_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session) DO NOTHING"
)


class SqliteTranscriptStore:
    """A `TranscriptStore` in one SQLite file, safe across processes (WAL mode).

    sqlite3 is blocking, so calls run in a thread; one connection guarded by a
    lock is enough for a worker's or an API's load and avoids reopening the file.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._purges = PurgeClock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    async def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._lock:
                return self._db.execute(sql, params).fetchall()

        return await asyncio.to_thread(run)

    async def _write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> int:
        """Run `executemany` statements in one transaction; returns the rows changed."""

        def write() -> int:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    changed = sum(
                        self._db.executemany(sql, rows).rowcount for sql, rows in statements
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                return changed

        return await asyncio.to_thread(write)

    async def upsert(self, session: str, messages: Sequence[Message]) -> None:
        rows = [_row(session, m) for m in messages]
        if rows:
            await self._write(
                [
                    (
                        "INSERT INTO messages (session, seq, turn_id, role, created_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session, seq) DO UPDATE SET"
                        " turn_id=excluded.turn_id, role=excluded.role,"
                        " created_at=excluded.created_at, body=excluded.body",
                        rows,
                    )
                ]
            )

    async def truncate(self, session: str, *, from_seq: int) -> int:
        key = [(session, from_seq)]
        return await self._write(
            [
                ("DELETE FROM messages WHERE session = ? AND seq >= ?", key),
                ("DELETE FROM summaries WHERE session = ? AND upto_seq > ?", key),
            ]
        )

    async def window(self, session: str, *, before_seq: int, limit: int) -> list[Message]:
        rows = await self._run(
            "SELECT body FROM messages WHERE session = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (session, before_seq, limit),
        )
        return [Message.model_validate_json(body) for (body,) in reversed(rows)]

    async def messages(
        self, session: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Message]:
        rows = await self._run(
            "SELECT body FROM messages WHERE session = ? AND seq > ? ORDER BY seq LIMIT ?",
            (session, after_seq, limit),
        )
        return [Message.model_validate_json(body) for (body,) in rows]

    async def turn_messages(self, session: str, turn_id: str) -> list[Message]:
        rows = await self._run(
            "SELECT body FROM messages WHERE session = ? AND turn_id = ? ORDER BY seq",
            (session, turn_id),
        )
        return [Message.model_validate_json(body) for (body,) in rows]

    async def usage(self, session: str, *, from_seq: int = 0) -> Usage:
        [(prompt, completion, cost, estimated)] = await self._run(
            "SELECT coalesce(sum(json_extract(body, '$.usage.prompt_tokens')), 0),"
            " coalesce(sum(json_extract(body, '$.usage.completion_tokens')), 0),"
            " coalesce(sum(json_extract(body, '$.usage.cost_usd')), 0),"
            " coalesce(max(json_extract(body, '$.usage.estimated')), 0)"
            " FROM messages WHERE session = ? AND seq >= ?",
            (session, from_seq),
        )
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=round(cost, 9),
            estimated=bool(estimated),
        )

    async def record_usage(self, call: CallUsage) -> None:
        u = call.usage
        row = (call.call, call.session, call.turn_id, call.tenant, call.user_id, call.agent)
        await self._run(
            "INSERT INTO usage (call, session, turn_id, tenant, user_id, agent, model,"
            " prompt_tokens, completion_tokens, cost_usd, estimated, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call) DO UPDATE SET"
            " prompt_tokens=excluded.prompt_tokens, completion_tokens=excluded.completion_tokens,"
            " cost_usd=excluded.cost_usd, estimated=excluded.estimated",
            (
                *row,
                call.model,
                u.prompt_tokens,
                u.completion_tokens,
                u.cost_usd,
                u.estimated,
                _timestamp(call.created_at),
            ),
        )

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotal]:
        sql, params = totals_query(query, lambda _: "?", _timestamp)
        return [total_of(row) for row in await self._run(sql, params)]

    async def last_activity(self, sessions: Sequence[str]) -> dict[str, datetime]:
        if not sessions:
            return {}
        marks = ", ".join("?" * len(sessions))
        rows = await self._run(
            "SELECT session, created_at FROM messages WHERE (session, seq) IN"
            f" (SELECT session, max(seq) FROM messages WHERE session IN ({marks})"
            " GROUP BY session)",
            list(sessions),
        )
        return {session: datetime.fromisoformat(at) for session, at in rows}

    async def register_session(
        self, session: str, *, tenant: str, user_id: str, formation: str
    ) -> None:
        await self._run(
            _REGISTER, (session, tenant, user_id, formation, datetime.now(UTC).isoformat())
        )

    async def copy_prefix(
        self, source: str, target: str, *, upto_seq: int, tenant: str, user_id: str, formation: str
    ) -> CopiedPrefix:
        def copy() -> CopiedPrefix:
            db = self._db
            with self._lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    rows = db.execute(
                        "SELECT body FROM messages WHERE session = ? AND seq < ? ORDER BY seq",
                        (source, upto_seq),
                    ).fetchall()
                    copies = [forked_copy(Message.model_validate_json(body)) for (body,) in rows]
                    db.executemany(
                        "INSERT INTO messages (session, seq, turn_id, role, created_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session, seq) DO NOTHING",
                        [_row(target, m) for m in copies],
                    )
                    db.executemany(
                        "INSERT INTO refs (session, ref, content, created_at) SELECT ?, ref,"
                        " content, created_at FROM refs WHERE session = ? AND ref = ?"
                        " ON CONFLICT (session, ref) DO NOTHING",
                        [(target, source, ref) for ref in {m.ref for m in copies if m.ref}],
                    )
                    summary = db.execute(
                        "SELECT upto_seq, content, created_at FROM summaries"
                        " WHERE session = ? AND upto_seq <= ? ORDER BY upto_seq DESC LIMIT 1",
                        (source, upto_seq),
                    ).fetchone()
                    if summary is not None:
                        db.execute(
                            "INSERT INTO summaries (session, upto_seq, content, created_at)"
                            " VALUES (?, ?, ?, ?) ON CONFLICT (session, upto_seq) DO NOTHING",
                            (target, *summary),
                        )
                    db.execute(
                        _REGISTER,
                        (target, tenant, user_id, formation, datetime.now(UTC).isoformat()),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            return CopiedPrefix(messages=len(rows), summary_upto=summary[0] if summary else 0)

        return await asyncio.to_thread(copy)

    async def user_sessions(self, tenant: str, user_id: str) -> list[str]:
        rows = await self._run(
            "SELECT session FROM sessions WHERE tenant = ? AND user_id = ? ORDER BY session",
            (tenant, user_id),
        )
        return [session for (session,) in rows]

    async def delete_sessions(self, sessions: Sequence[str]) -> int:
        keys = [(s,) for s in sessions]
        return await self._write(
            [(f"DELETE FROM {table} WHERE session = ?", keys) for table in _SESSION_TABLES]
        )

    async def save_summary(self, session: str, summary: Summary) -> None:
        await self._run(
            "INSERT INTO summaries (session, upto_seq, content, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session, upto_seq) DO UPDATE SET content=excluded.content,"
            " created_at=excluded.created_at",
            (session, summary.upto_seq, summary.content, summary.created_at.isoformat()),
        )

    async def latest_summary(self, session: str) -> Summary | None:
        rows = await self._run(
            "SELECT upto_seq, content, created_at FROM summaries WHERE session = ?"
            " ORDER BY upto_seq DESC LIMIT 1",
            (session,),
        )
        if not rows:
            return None
        upto_seq, content, created_at = rows[0]
        return Summary(
            upto_seq=upto_seq, content=content, created_at=datetime.fromisoformat(created_at)
        )

    async def put_reference(self, session: str, ref: str, content: str) -> None:
        await self._run(
            "INSERT INTO refs (session, ref, content, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (session, ref) DO UPDATE SET content=excluded.content",
            (session, ref, content, datetime.now(UTC).isoformat()),
        )

    async def get_reference(self, session: str, ref: str) -> str | None:
        rows = await self._run(
            "SELECT content FROM refs WHERE session = ? AND ref = ?", (session, ref)
        )
        return rows[0][0] if rows else None

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, live_after: datetime
    ) -> IdempotencyRecord | None:
        if self._purges.due():
            await self.purge_idempotency(created_before=live_after)
        row = (
            record.tenant,
            record.user_id,
            record.route,
            record.key,
            record.request_hash,
            json.dumps(record.ids),
            record.status,
            record.response.model_dump_json() if record.response else None,
            _timestamp(record.created_at),
        )

        def claim() -> tuple[Any, ...] | None:
            with self._lock:
                for _ in range(_CLAIM_TRIES):
                    # One statement, so two processes claiming one key at once cannot both
                    # insert: the loser's conflict finds the winner's row, which is live.
                    inserted = self._db.execute(
                        f"INSERT INTO idempotency ({_IDEMPOTENCY_COLUMNS})"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (tenant, user_id, route, idem_key) DO UPDATE SET"
                        " request_hash=excluded.request_hash, ids=excluded.ids,"
                        " status=excluded.status, response=excluded.response,"
                        " created_at=excluded.created_at"
                        " WHERE idempotency.created_at < ? RETURNING idem_key",
                        (*row, _timestamp(live_after)),
                    ).fetchall()
                    if inserted:
                        return None
                    existing: tuple[Any, ...] | None = self._db.execute(
                        f"SELECT {_IDEMPOTENCY_COLUMNS} FROM idempotency WHERE {_IDEMPOTENCY_KEY}",
                        row[:4],
                    ).fetchone()
                    if existing is not None:
                        return existing
                    # Purged between the two statements (by a process whose clock runs ahead).
            raise RuntimeError(f"idempotency key {record.key!r} could not be claimed")

        existing = await asyncio.to_thread(claim)
        return None if existing is None else _idempotency_record(existing)

    async def finish_idempotency(self, record: IdempotencyRecord, response: StoredResponse) -> None:
        await self._run(
            "UPDATE idempotency SET status = 'done', response = ?"
            f" WHERE {_IDEMPOTENCY_KEY} AND status = 'started' AND created_at = ?",
            (
                response.model_dump_json(),
                record.tenant,
                record.user_id,
                record.route,
                record.key,
                _timestamp(record.created_at),
            ),
        )

    async def purge_idempotency(self, *, created_before: datetime) -> int:
        return await self._write(
            [("DELETE FROM idempotency WHERE created_at < ?", [(_timestamp(created_before),)])]
        )

    async def delete_user_idempotency(self, tenant: str, user_id: str) -> int:
        return await self._write(
            [("DELETE FROM idempotency WHERE tenant = ? AND user_id = ?", [(tenant, user_id)])]
        )

    async def cached_answer(self, key: str, *, now: datetime) -> str | None:
        rows = await self._run(
            "SELECT answer FROM answer_cache WHERE cache_key = ? AND expires_at > ?",
            (key, _timestamp(now)),
        )
        return rows[0][0] if rows else None

    async def cache_answer(self, key: str, answer: str, *, expires_at: datetime) -> None:
        await self._write(
            [
                # Expired answers go as new ones come: the table holds only live ones.
                ("DELETE FROM answer_cache WHERE expires_at <= ?", [(_timestamp(_now()),)]),
                (
                    "INSERT INTO answer_cache (cache_key, answer, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (cache_key) DO UPDATE SET answer = excluded.answer,"
                    " expires_at = excluded.expires_at",
                    [(key, answer, _timestamp(expires_at))],
                ),
            ]
        )

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(session: str, message: Message) -> tuple[str, int, str, str, str, str]:
    """A message as a row of `messages`."""
    m = message
    return (session, m.seq, m.turn_id, m.role, m.created_at.isoformat(), m.model_dump_json())


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO text: ordered as strings as the times are."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _idempotency_record(row: tuple[Any, ...]) -> IdempotencyRecord:
    tenant, user_id, route, key, request_hash, ids, status, response, created_at = row
    return IdempotencyRecord(
        tenant=tenant,
        user_id=user_id,
        route=route,
        key=key,
        request_hash=request_hash,
        ids=json.loads(ids),
        status=status,
        response=StoredResponse.model_validate_json(response) if response else None,
        created_at=datetime.fromisoformat(created_at),
    )
