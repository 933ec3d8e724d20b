"""Limits shared through Redis: two `keel api` processes hold one key to one budget."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from temporalio.client import Client

from api._redis_limits import RedisConcurrencyLimit, RedisRateLimiter
from api.problems import Problem
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers
from tests.procs import KEEL, KeelProcess, free_port, keel_process, write_formation

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BURST = 40
"""Requests a key may make at once (and one more a minute)."""
FORMATION = {"models": {"default": {"provider": "scripted"}}, "agents": [{"name": "assistant"}]}


@pytest.fixture
async def apis(tmp_path: Path, settings: Settings) -> AsyncIterator[tuple[list[str], list[str]]]:
    """Two fresh client keys, and the URLs of two API processes sharing one Redis."""
    # Keys of their own: no budget left over from other runs.
    keys = [f"key-{uuid.uuid4().hex}" for _ in range(2)]
    path, _ = write_formation(tmp_path, FORMATION)
    processes: list[KeelProcess] = []
    urls: list[str] = []
    try:
        for name in ("api-a", "api-b"):
            port = free_port()
            argv = [*KEEL, "api", "--port", str(port)]
            process = keel_process(tmp_path, settings, path, argv, name=name)
            process.env |= {
                "KEEL_REDIS_URL": REDIS_URL,
                "KEEL_CLIENT_KEYS": ",".join(keys),
                "KEEL_RATE_LIMIT_PER_MINUTE": "1",
                "KEEL_RATE_LIMIT_BURST": str(BURST),
                "KEEL_MAX_CONCURRENT_TURNS_PER_USER": "1",
                "KEEL_MAX_SSE_PER_KEY": "1",
            }
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
        await asyncio.gather(
            *(p.start(ready=f"{u}/health") for p, u in zip(processes, urls, strict=True))
        )
        yield keys, urls
    finally:
        for process in processes:
            process.stop()


USER = f"ann-{uuid.uuid4().hex[:8]}"
"""A user of this run's own: waiting turns count per user, in a Redis other runs share."""


def _client(url: str, key: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}", "X-User-Id": USER}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)


async def test_two_apis_hold_one_key_to_one_set_of_limits(
    apis: tuple[list[str], list[str]],
    client: Client,
    settings: Settings,
    store: TranscriptStore,
    tmp_path: Path,
) -> None:
    (key, other_key), (url_a, url_b) = apis
    _, formation = write_formation(tmp_path, FORMATION)
    async with (
        _client(url_a, key) as a,
        _client(url_b, key) as b,
        running_workers(client, settings, formation, store),
    ):
        # Waiting turns: one per user, whichever API the second one reaches.
        slow = asyncio.create_task(a.post("/v1/chat", json={"message": "slow [[sleep 2]]"}))
        await asyncio.sleep(1)
        refused = await b.post("/v1/chat", json={"message": "me too"})
        assert refused.status_code == 429 and refused.json()["type"].endswith("too-many-turns")
        answered = await slow
        assert answered.status_code == 200, answered.text
        session_id = answered.json()["session_id"]

        # Open streams: one per key, across both APIs.
        events = f"/v1/sessions/{session_id}/events"
        async with a.stream("GET", events) as held:
            assert held.status_code == 200
            second = await b.get(events)
            assert second.status_code == 429, second.text
            assert second.json()["type"].endswith("too-many-streams")
        # The first stream's slot came back when it closed (the API notices the disconnect).
        for _ in range(50):
            async with b.stream("GET", events) as again:
                if again.status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status_code == 200

    # The rate: one bucket for the key, whichever API a request reaches. Apart, each
    # API would let all of them through (BURST + 2 < 2 * BURST).
    async with _client(url_a, other_key) as a, _client(url_b, other_key) as b:
        statuses = [(await c.get("/v1/agents")).status_code for c in (a, b) * (BURST // 2 + 1)]
    assert statuses.count(200) == BURST and statuses[-2:] == [429, 429], statuses


async def test_the_slot_of_a_holder_that_died_frees_itself() -> None:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        limit = RedisConcurrencyLimit(connection, 1, what="things", type_="test", lease_s=0.5)
        key = uuid.uuid4().hex
        dead = limit.hold(key)
        await dead.__aenter__()  # a holder that never leaves: its API was killed
        for task in asyncio.all_tasks():
            if task.get_coro().__qualname__.endswith("_keep"):  # type: ignore[union-attr]
                task.cancel()  # and renews nothing any more
        assert await limit.active(key) == 1
        with pytest.raises(Problem):
            async with limit.hold(key):
                pass
        await asyncio.sleep(0.7)
        assert await limit.active(key) == 0
        async with limit.hold(key):
            assert await limit.active(key) == 1
        assert await limit.active(key) == 0
        await dead.__aexit__(None, None, None)  # its late goodbye frees nothing of another's
        assert await limit.active(key) == 0
    finally:
        await connection.aclose()


async def test_the_shared_bucket_refills_at_the_rate() -> None:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        limiter = RedisRateLimiter(connection, per_minute=600, burst=2)
        key = uuid.uuid4().hex
        await limiter.check(key)
        await limiter.check(key)
        with pytest.raises(Problem) as caught:
            await limiter.check(key)
        assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "1"}
        await asyncio.sleep(0.15)  # ten a second: one token back
        await limiter.check(key)
        await limiter.check(None)  # dev mode: no key, no limit
    finally:
        await connection.aclose()


async def test_an_unreachable_redis_lets_requests_through() -> None:
    connection = redis.Redis.from_url("redis://127.0.0.1:1/0")
    try:
        await RedisRateLimiter(connection, per_minute=1, burst=1).check("k")
        async with RedisConcurrencyLimit(connection, 1, what="x", type_="test").hold("k"):
            pass
    finally:
        await connection.aclose()
