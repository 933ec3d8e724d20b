"""A throwaway PostgreSQL schema per test, on the server at 127.0.0.1 (trust auth)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

SERVER = os.environ.get("KEEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """Yield a store URL whose `search_path` is a fresh schema, dropped on exit."""
    schema = f"keel_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{SERVER}?search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
