"""The schema of both transcript stores, as migrations: SQLite's and PostgreSQL's."""

from __future__ import annotations

# Each entry upgrades the schema by one version; `PRAGMA user_version` records
# how many have run, so a new release can open an old file. Never edit an entry
# that has been released: add one.
SQLITE_MIGRATIONS: tuple[str, ...] = (
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
    """
    CREATE TABLE sessions (
        session TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        formation TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions (tenant, user_id);
    CREATE TABLE summaries (
        session TEXT NOT NULL,
        upto_seq INTEGER NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (session, upto_seq)
    ) WITHOUT ROWID;
    CREATE TABLE refs (
        session TEXT NOT NULL,
        ref TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (session, ref)
    ) WITHOUT ROWID;
    """,
    # created_at as fixed-width UTC ISO text, so that comparing strings compares times.
    """
    CREATE TABLE idempotency (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        route TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        ids TEXT NOT NULL,
        status TEXT NOT NULL,
        response TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (tenant, user_id, route, idem_key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_created ON idempotency (created_at);
    """,
    # Answers of the response cache (`cache_ttl_s`), when the worker has no Redis.
    """
    CREATE TABLE answer_cache (
        cache_key TEXT PRIMARY KEY,
        answer TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX answer_cache_expires ON answer_cache (expires_at);
    """,
    # One row per model call, written by the LLM activity: what `GET /v1/usage` sums.
    # `session` and `turn_id` are those the call counts for (a delegated specialist's
    # count for the session and turn that delegated); `call` names the call itself.
    """
    CREATE TABLE usage (
        call TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        estimated INTEGER NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX usage_tenant_time ON usage (tenant, created_at);
    CREATE INDEX usage_session ON usage (session);
    """,
)

# Each entry upgrades the schema by one version; `keel_migrations` records the
# ones applied, so a new release can open an old database. Never edit an entry
# that has been released: add one.
POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        session TEXT NOT NULL,
        seq INTEGER NOT NULL,
        turn_id TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    );
    CREATE INDEX messages_turn ON messages (session, turn_id);
    """,
    """
    CREATE TABLE sessions (
        session TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        formation TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX sessions_user ON sessions (tenant, user_id);
    CREATE TABLE summaries (
        session TEXT NOT NULL,
        upto_seq INTEGER NOT NULL,
        content TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (session, upto_seq)
    );
    CREATE TABLE refs (
        session TEXT NOT NULL,
        ref TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (session, ref)
    );
    """,
    """
    CREATE TABLE idempotency (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        route TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        ids TEXT NOT NULL,
        status TEXT NOT NULL,
        response TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, user_id, route, idem_key)
    );
    CREATE INDEX idempotency_created ON idempotency (created_at);
    """,
    # Answers of the response cache (`cache_ttl_s`), when the worker has no Redis.
    """
    CREATE TABLE answer_cache (
        cache_key TEXT PRIMARY KEY,
        answer TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX answer_cache_expires ON answer_cache (expires_at);
    """,
    # One row per model call, written by the LLM activity: what `GET /v1/usage` sums.
    # `session` and `turn_id` are those the call counts for (a delegated specialist's
    # count for the session and turn that delegated); `call` names the call itself.
    """
    CREATE TABLE usage (
        call TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        estimated BOOLEAN NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX usage_tenant_time ON usage (tenant, created_at);
    CREATE INDEX usage_session ON usage (session);
    """,
)
