"""PostgreSQL transcript store: for deployments whose workers and APIs run on several machines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from keel.idempotency import IdempotencyRecord, PurgeClock, StoredResponse
from keel.messages import Message, Summary, Usage, UsageTotal
from keel.store._base import CopiedPrefix, forked_copy
from keel.store._schema import POSTGRES_MIGRATIONS as MIGRATIONS
from keel.store._usage import CallUsage, UsageQuery, total_of, totals_query

_IDEMPOTENCY_COLUMNS = (
    "tenant, user_id, route, idem_key, request_hash, ids, status, response, created_at"
)
_CLAIM_TRIES = 3
_IDEMPOTENCY_KEY = "tenant = $1 AND user_id = $2 AND route = $3 AND idem_key = $4"
_SESSION_TABLES = ("messages", "summaries", "refs", "sessions", "usage")
_REGISTER = (
    "INSERT INTO sessions (session, tenant, user_id, formation) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (session) DO NOTHING"
)
_MIGRATION_LOCK = 0x6B65656C  # "keel": one process migrates, the others wait for it


async def migrate(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, *, upto: int = len(MIGRATIONS)
) -> int:
    """Apply the migrations the database lacks, up to version `upto`; returns the version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS keel_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM keel_migrations")
        for number in range(version + 1, upto + 1):
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("INSERT INTO keel_migrations (version) VALUES ($1)", number)
            version = number
    return version


class PostgresTranscriptStore:
    """A `TranscriptStore` in PostgreSQL, through an asyncpg connection pool.

    The pool is made on first use (and the schema migrated then), because
    stores are opened from synchronous code and a pool belongs to the event
    loop that made it. URL query parameters such as `search_path` become
    server settings, so a deployment can keep Keel's tables in a schema.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._url = url
        self._sizes = (min_size, max_size)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._purges = PurgeClock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    pool = await asyncpg.create_pool(
                        self._url, min_size=self._sizes[0], max_size=self._sizes[1]
                    )
                    async with pool.acquire() as conn:
                        await migrate(conn)
                    self._pool = pool
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self._get_pool()
        return await pool.fetch(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> None:
        pool = await self._get_pool()
        await pool.execute(sql, *args)

    async def upsert(self, session: str, messages: Sequence[Message]) -> None:
        rows = [_row(session, m) for m in messages]
        if rows:
            pool = await self._get_pool()
            await pool.executemany(
                "INSERT INTO messages (session, seq, turn_id, role, created_at, body)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session, seq) DO UPDATE SET"
                " turn_id=excluded.turn_id, role=excluded.role,"
                " created_at=excluded.created_at, body=excluded.body",
                rows,
            )

    async def truncate(self, session: str, *, from_seq: int) -> int:
        pool = await self._get_pool()
        deleted = 0
        async with pool.acquire() as conn, conn.transaction():
            for sql in (
                "DELETE FROM messages WHERE session = $1 AND seq >= $2",
                "DELETE FROM summaries WHERE session = $1 AND upto_seq > $2",
            ):
                status = await conn.execute(sql, session, from_seq)
                deleted += int(status.rsplit(" ", 1)[-1])  # "DELETE <count>"
        return deleted

    async def window(self, session: str, *, before_seq: int, limit: int) -> list[Message]:
        rows = await self._fetch(
            "SELECT body FROM messages WHERE session = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            session,
            before_seq,
            limit,
        )
        return [Message.model_validate_json(row["body"]) for row in reversed(rows)]

    async def messages(
        self, session: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Message]:
        rows = await self._fetch(
            "SELECT body FROM messages WHERE session = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            session,
            after_seq,
            limit,
        )
        return [Message.model_validate_json(row["body"]) for row in rows]

    async def turn_messages(self, session: str, turn_id: str) -> list[Message]:
        rows = await self._fetch(
            "SELECT body FROM messages WHERE session = $1 AND turn_id = $2 ORDER BY seq",
            session,
            turn_id,
        )
        return [Message.model_validate_json(row["body"]) for row in rows]

    async def usage(self, session: str, *, from_seq: int = 0) -> Usage:
        [row] = await self._fetch(
            "SELECT coalesce(sum((body::jsonb #>> '{usage,prompt_tokens}')::bigint), 0) AS prompt,"
            " coalesce(sum((body::jsonb #>> '{usage,completion_tokens}')::bigint), 0) AS done,"
            " coalesce(sum((body::jsonb #>> '{usage,cost_usd}')::float8), 0) AS cost,"
            " coalesce(bool_or((body::jsonb #>> '{usage,estimated}')::boolean), false) AS estimated"
            " FROM messages WHERE session = $1 AND seq >= $2",
            session,
            from_seq,
        )
        return Usage(
            prompt_tokens=row["prompt"],
            completion_tokens=row["done"],
            cost_usd=round(row["cost"], 9),
            estimated=row["estimated"],
        )

    async def record_usage(self, call: CallUsage) -> None:
        u = call.usage
        await self._execute(
            "INSERT INTO usage (call, session, turn_id, tenant, user_id, agent, model,"
            " prompt_tokens, completion_tokens, cost_usd, estimated, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (call)"
            " DO UPDATE SET prompt_tokens=excluded.prompt_tokens,"
            " completion_tokens=excluded.completion_tokens, cost_usd=excluded.cost_usd,"
            " estimated=excluded.estimated",
            call.call,
            call.session,
            call.turn_id,
            call.tenant,
            call.user_id,
            call.agent,
            call.model,
            u.prompt_tokens,
            u.completion_tokens,
            u.cost_usd,
            u.estimated,
            call.created_at,
        )

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotal]:
        sql, params = totals_query(query, lambda n: f"${n}", lambda moment: moment)
        return [total_of(tuple(row)) for row in await self._fetch(sql, *params)]

    async def last_activity(self, sessions: Sequence[str]) -> dict[str, datetime]:
        if not sessions:
            return {}
        rows = await self._fetch(
            "SELECT session, created_at FROM messages WHERE (session, seq) IN"
            " (SELECT session, max(seq) FROM messages WHERE session = ANY($1::text[])"
            " GROUP BY session)",
            list(sessions),
        )
        return {row["session"]: row["created_at"] for row in rows}

    async def register_session(
        self, session: str, *, tenant: str, user_id: str, formation: str
    ) -> None:
        await self._execute(_REGISTER, session, tenant, user_id, formation)

    async def copy_prefix(
        self, source: str, target: str, *, upto_seq: int, tenant: str, user_id: str, formation: str
    ) -> CopiedPrefix:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT body FROM messages WHERE session = $1 AND seq < $2 ORDER BY seq",
                source,
                upto_seq,
            )
            copies = [forked_copy(Message.model_validate_json(row["body"])) for row in rows]
            await conn.executemany(
                "INSERT INTO messages (session, seq, turn_id, role, created_at, body)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session, seq) DO NOTHING",
                [_row(target, m) for m in copies],
            )
            await conn.execute(
                "INSERT INTO refs (session, ref, content, created_at)"
                " SELECT $1, ref, content, created_at FROM refs"
                " WHERE session = $2 AND ref = ANY($3::text[])"
                " ON CONFLICT (session, ref) DO NOTHING",
                target,
                source,
                sorted({m.ref for m in copies if m.ref}),
            )
            summary = await conn.fetchrow(
                "SELECT upto_seq, content, created_at FROM summaries"
                " WHERE session = $1 AND upto_seq <= $2 ORDER BY upto_seq DESC LIMIT 1",
                source,
                upto_seq,
            )
            if summary is not None:
                await conn.execute(
                    "INSERT INTO summaries (session, upto_seq, content, created_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (session, upto_seq) DO NOTHING",
                    target,
                    *tuple(summary),
                )
            await conn.execute(_REGISTER, target, tenant, user_id, formation)
        return CopiedPrefix(messages=len(rows), summary_upto=summary["upto_seq"] if summary else 0)

    async def user_sessions(self, tenant: str, user_id: str) -> list[str]:
        rows = await self._fetch(
            "SELECT session FROM sessions WHERE tenant = $1 AND user_id = $2 ORDER BY session",
            tenant,
            user_id,
        )
        return [row["session"] for row in rows]

    async def delete_sessions(self, sessions: Sequence[str]) -> int:
        pool = await self._get_pool()
        deleted = 0
        async with pool.acquire() as conn, conn.transaction():
            for table in _SESSION_TABLES:
                status = await conn.execute(
                    f"DELETE FROM {table} WHERE session = ANY($1::text[])", list(sessions)
                )
                deleted += int(status.rsplit(" ", 1)[-1])  # "DELETE <count>"
        return deleted

    async def save_summary(self, session: str, summary: Summary) -> None:
        await self._execute(
            "INSERT INTO summaries (session, upto_seq, content, created_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (session, upto_seq) DO UPDATE SET"
            " content=excluded.content, created_at=excluded.created_at",
            session,
            summary.upto_seq,
            summary.content,
            summary.created_at,
        )

    async def latest_summary(self, session: str) -> Summary | None:
        rows = await self._fetch(
            "SELECT upto_seq, content, created_at FROM summaries WHERE session = $1"
            " ORDER BY upto_seq DESC LIMIT 1",
            session,
        )
        return Summary(**dict(rows[0])) if rows else None

    async def put_reference(self, session: str, ref: str, content: str) -> None:
        await self._execute(
            "INSERT INTO refs (session, ref, content) VALUES ($1, $2, $3)"
            " ON CONFLICT (session, ref) DO UPDATE SET content=excluded.content",
            session,
            ref,
            content,
        )

    async def get_reference(self, session: str, ref: str) -> str | None:
        rows = await self._fetch(
            "SELECT content FROM refs WHERE session = $1 AND ref = $2", session, ref
        )
        return rows[0]["content"] if rows else None

    async def claim_idempotency(
        self, record: IdempotencyRecord, *, live_after: datetime
    ) -> IdempotencyRecord | None:
        if self._purges.due():
            await self.purge_idempotency(created_before=live_after)
        key = (record.tenant, record.user_id, record.route, record.key)
        pool = await self._get_pool()
        for _ in range(_CLAIM_TRIES):
            # One statement, so two processes claiming one key at once cannot both insert:
            # the loser's conflict finds the winner's row, which is live.
            inserted = await pool.fetch(
                f"INSERT INTO idempotency ({_IDEMPOTENCY_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (tenant, user_id, route, idem_key) DO UPDATE SET"
                " request_hash=excluded.request_hash, ids=excluded.ids,"
                " status=excluded.status, response=excluded.response,"
                " created_at=excluded.created_at"
                " WHERE idempotency.created_at < $10 RETURNING idem_key",
                *key,
                record.request_hash,
                json.dumps(record.ids),
                record.status,
                record.response.model_dump_json() if record.response else None,
                record.created_at,
                live_after,
            )
            if inserted:
                return None
            rows = await pool.fetch(
                f"SELECT {_IDEMPOTENCY_COLUMNS} FROM idempotency WHERE {_IDEMPOTENCY_KEY}", *key
            )
            if rows:
                return _idempotency_record(rows[0])
            # Purged between the two statements (by a process whose clock runs ahead).
        raise RuntimeError(f"idempotency key {record.key!r} could not be claimed")

    async def finish_idempotency(self, record: IdempotencyRecord, response: StoredResponse) -> None:
        await self._execute(
            "UPDATE idempotency SET status = 'done', response = $5"
            f" WHERE {_IDEMPOTENCY_KEY} AND status = 'started' AND created_at = $6",
            record.tenant,
            record.user_id,
            record.route,
            record.key,
            response.model_dump_json(),
            record.created_at,
        )

    async def purge_idempotency(self, *, created_before: datetime) -> int:
        pool = await self._get_pool()
        status = await pool.execute("DELETE FROM idempotency WHERE created_at < $1", created_before)
        return int(status.rsplit(" ", 1)[-1])

    async def delete_user_idempotency(self, tenant: str, user_id: str) -> int:
        pool = await self._get_pool()
        status = await pool.execute(
            "DELETE FROM idempotency WHERE tenant = $1 AND user_id = $2", tenant, user_id
        )
        return int(status.rsplit(" ", 1)[-1])

    async def cached_answer(self, key: str, *, now: datetime) -> str | None:
        rows = await self._fetch(
            "SELECT answer FROM answer_cache WHERE cache_key = $1 AND expires_at > $2", key, now
        )
        return str(rows[0]["answer"]) if rows else None

    async def cache_answer(self, key: str, answer: str, *, expires_at: datetime) -> None:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            # Expired answers go as new ones come: the table holds only live ones.
            await conn.execute("DELETE FROM answer_cache WHERE expires_at <= now()")
            await conn.execute(
                "INSERT INTO answer_cache (cache_key, answer, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (cache_key) DO UPDATE SET answer = excluded.answer,"
                " expires_at = excluded.expires_at",
                key,
                answer,
                expires_at,
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _row(session: str, message: Message) -> tuple[str, int, str, str, datetime, str]:
    """A message as a row of `messages`."""
    m = message
    return (session, m.seq, m.turn_id, m.role, m.created_at, m.model_dump_json())


def _idempotency_record(row: asyncpg.Record) -> IdempotencyRecord:
    response = row["response"]
    return IdempotencyRecord(
        tenant=row["tenant"],
        user_id=row["user_id"],
        route=row["route"],
        key=row["idem_key"],
        request_hash=row["request_hash"],
        ids=json.loads(row["ids"]),
        status=row["status"],
        response=StoredResponse.model_validate_json(response) if response else None,
        created_at=row["created_at"],
    )
