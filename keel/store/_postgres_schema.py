"""The PostgreSQL store's schema, as the migrations that build it one version at a time."""

from __future__ import annotations

# Each entry upgrades the schema by one version; `keel_migrations` records the
# ones applied, so a new release can open an old database. Never edit an entry
# that has been released: add one.
MIGRATIONS: tuple[str, ...] = (
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
