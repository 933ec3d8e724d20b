"""Limits shared by every API process through Redis: one budget per key, however many APIs.

Each check is one Lua script, so it is atomic across processes, and reads Redis's own
clock (`TIME`), so the processes' clocks need not agree. The rate limit is the same
token bucket as the in-process one, kept in a hash per key. Concurrent holders are a
sorted set per key whose scores are lease expiries: a holder renews its lease while it
holds, so the slots of an API that crashed free themselves within `LEASE_S`.

When Redis cannot be reached the limits let requests through (and log it): an outage
of the side store must not take the API down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from redis.exceptions import RedisError

from api._limits import Limits, rate_limited, too_many
from keel.logging import get_logger
from keel.settings import Settings

KEY_PREFIX = "keel:limits:"
LEASE_S = 30.0
"""How long a held slot outlives its holder's last renewal (an API that died holding it)."""
log = get_logger(__name__)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1e6 "
_TAKE_TOKEN = (
    _NOW
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then tokens = tokens - 1 taken = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {taken, tostring(tokens)}
"""
)
"""KEYS: the bucket. ARGV: tokens per second, burst, the bucket's TTL (ms, until full)."""
_TAKE_SLOT = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return 1
"""
)
"""KEYS: the holders. ARGV: the limit, this holder's id, the lease (s)."""
_RENEW_SLOT = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return 1
"""
)
"""KEYS: the holders. ARGV: this holder's id, the lease (s)."""
_COUNT_SLOTS = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"


class RedisRateLimiter:
    """The token bucket of `api._limits.RateLimiter`, one per key in Redis.

    Args:
        client: The Redis client (shared by the app's limits).
        per_minute: The sustained rate; 0 disables the limiter.
        burst: The bucket's size.
    """

    def __init__(self, client: redis.Redis, per_minute: int, burst: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = max(burst, 1)
        self._script = client.register_script(_TAKE_TOKEN)
        self._ttl_ms = round((self._burst / self._rate + 1) * 1000) if self._rate else 0

    async def check(self, key: str | None) -> None:
        """Take one token for `key`; None is not limited.

        Raises:
            Problem: 429 `rate-limited`, with Retry-After, when the bucket is empty.
        """
        if not self._rate or key is None:
            return
        try:
            taken, tokens = await self._script(
                keys=[f"{KEY_PREFIX}rate:{key}"], args=[self._rate, self._burst, self._ttl_ms]
            )
        except RedisError as err:
            log.warning("rate limit not checked: Redis unavailable", error=type(err).__name__)
            return
        if not int(taken):
            raise rate_limited(float(tokens), self._rate)


class RedisConcurrencyLimit:
    """At most `limit` holders per key at once, across every API process.

    Args:
        client: The Redis client (shared by the app's limits).
        limit: Holders per key; 0 disables the limit.
        what: What is counted, for the problem's detail.
        type_: The problem's type slug.
        lease_s: How long a slot outlives its holder's last renewal.
    """

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        *,
        what: str,
        type_: str,
        lease_s: float = LEASE_S,
    ) -> None:
        self.limit = limit
        self._what = what
        self._type = type_
        self._lease_s = lease_s
        self._prefix = f"{KEY_PREFIX}{type_}:"
        self._take = client.register_script(_TAKE_SLOT)
        self._renew = client.register_script(_RENEW_SLOT)
        self._count = client.register_script(_COUNT_SLOTS)
        self._client = client

    async def active(self, key: str) -> int:
        """How many live holders `key` has, in every process."""
        return int(await self._count(keys=[self._prefix + key]))

    @asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        """Hold one of `key`'s places until the block ends; None is not limited.

        Raises:
            Problem: 429 with Retry-After when `key` holds `limit` places already.
        """
        if key is None or not self.limit:
            yield
            return
        slots = self._prefix + key
        holder = uuid.uuid4().hex
        try:
            taken = await self._take(keys=[slots], args=[self.limit, holder, self._lease_s])
        except RedisError as err:
            log.warning("concurrency not checked: Redis unavailable", error=type(err).__name__)
            taken = None
        if taken is not None and not int(taken):
            raise too_many(self.limit, self._what, self._type)
        renewing = asyncio.create_task(self._keep(slots, holder)) if taken else None
        try:
            yield
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(RedisError):
                    # Shielded: a request cancelled as it ends still gives its place back.
                    await asyncio.shield(self._client.zrem(slots, holder))

    async def _keep(self, slots: str, holder: str) -> None:
        """Renew the lease while the place is held, a third of the lease apart."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew(keys=[slots], args=[holder, self._lease_s])
            except RedisError as err:
                log.warning("lease not renewed: Redis unavailable", error=type(err).__name__)


def redis_limits(settings: Settings, url: str) -> Limits:
    """The limits the settings ask for, counted in the Redis at `url`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    return Limits(
        rate=RedisRateLimiter(client, settings.rate_limit_per_minute, settings.rate_limit_burst),
        turns=RedisConcurrencyLimit(
            client,
            settings.max_concurrent_turns_per_user,
            what="chat requests waiting for an answer per user",
            type_="too-many-turns",
        ),
        streams=RedisConcurrencyLimit(
            client,
            settings.max_sse_per_key,
            what="open event streams per key",
            type_="too-many-streams",
        ),
        closing=[client.aclose],
    )
