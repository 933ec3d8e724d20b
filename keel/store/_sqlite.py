"""SQLite transcript store: the default, one file under the data dir shared by API and worker."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from keel.messages import Message

# Each entry upgrades the schema by one version; `PRAGMA user_version` records
# how many have run, so a new release can open an old file.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        session TEXT NOT NULL,
        seq INTEGER NOT NULL,
        turn_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    ) WITHOUT ROWID;
    CREATE INDEX messages_turn ON messages (session, turn_id);
    """,
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
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    async def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[str]]:
        def run() -> list[tuple[str]]:
            with self._lock:
                return self._db.execute(sql, params).fetchall()

        return await asyncio.to_thread(run)

    async def upsert(self, session: str, messages: Sequence[Message]) -> None:
        rows = [
            (session, m.seq, m.turn_id, m.role, m.created_at.isoformat(), m.model_dump_json())
            for m in messages
        ]

        def write() -> None:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany(
                        "INSERT INTO messages (session, seq, turn_id, role, created_at, body)"
                        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session, seq) DO UPDATE SET"
                        " turn_id=excluded.turn_id, role=excluded.role,"
                        " created_at=excluded.created_at, body=excluded.body",
                        rows,
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

        if rows:
            await asyncio.to_thread(write)

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

    async def close(self) -> None:
        with self._lock:
            self._db.close()
