"""Limits per key: a token bucket, and counters of concurrent holders.

In this process by default; shared by every API process through Redis when
`KEEL_REDIS_URL` is set (`api._redis_limits`), so N processes do not allow N times the
limits. The methods are async for the sake of the Redis ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from api.problems import Problem
from keel.settings import Settings

_MAX_TRACKED = 10_000
"""Buckets kept before idle, refilled ones are dropped (they hold no information)."""


class RateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `per_minute`.

    Args:
        per_minute: the sustained rate; 0 disables the limiter.
        burst: the bucket's size.
        clock: seconds, monotonic; tests pass their own.
    """

    def __init__(
        self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """key -> (tokens, when they were counted)."""

    async def check(self, key: str | None) -> None:
        """Take one token for `key`; None is not limited.

        Raises:
            Problem: 429 `rate-limited`, with Retry-After in whole seconds, when
                the bucket is empty.
        """
        if not self._rate or key is None:
            return
        now = self._clock()
        tokens, then = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            raise rate_limited(tokens, self._rate)
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > _MAX_TRACKED:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]


class ConcurrencyLimit:
    """At most `limit` holders per key at once (in this process).

    Args:
        limit: holders per key; 0 disables the limit.
        what: what is counted, for the problem's detail ("open event streams").
        type_: the problem's type slug.
    """

    def __init__(self, limit: int, *, what: str, type_: str) -> None:
        self.limit = limit
        self._what = what
        self._type = type_
        self._held: dict[str, int] = {}

    async def active(self, key: str) -> int:
        """How many holders `key` has now."""
        return self._held.get(key, 0)

    @asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        """Hold one place for `key` until the block ends; None is not limited.

        Raises:
            Problem: 429 with Retry-After when `key` already holds `limit` places;
                raised on entry, before anything is started.
        """
        if key is None:
            yield
            return
        count = self._held.get(key, 0)
        if self.limit and count >= self.limit:
            raise too_many(self.limit, self._what, self._type)
        self._held[key] = count + 1
        try:
            yield
        finally:
            remaining = self._held[key] - 1
            if remaining:
                self._held[key] = remaining
            else:
                del self._held[key]


class RateLimit(Protocol):
    """A request rate per key (`RateLimiter` here, `RedisRateLimiter` shared)."""

    async def check(self, key: str | None) -> None:
        """Take one request from `key`'s budget; 429 `rate-limited` when it is spent."""
        ...


class HeldLimit(Protocol):
    """Concurrent holders per key (`ConcurrencyLimit` here, `RedisConcurrencyLimit` shared)."""

    limit: int

    async def active(self, key: str) -> int:
        """How many holders `key` has now."""
        ...

    def hold(self, key: str | None) -> AbstractAsyncContextManager[None]:
        """Hold one place for `key` while the block runs; 429 on entry when none is free."""
        ...


@dataclass
class Limits:
    """The limits of one app: its own, or shared through Redis."""

    rate: RateLimit
    turns: HeldLimit
    """Chat requests waiting for an answer, per user."""
    streams: HeldLimit
    """Open SSE connections, per key."""
    closing: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """What `close` awaits: the Redis connections of shared limits."""

    async def close(self) -> None:
        """Release the connections of shared limits."""
        for close in self.closing:
            await close()

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the settings ask for: shared through Redis when one is configured."""
        if settings.redis_url:
            from api._redis_limits import redis_limits

            return redis_limits(settings, settings.redis_url)
        return cls(
            rate=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            turns=ConcurrencyLimit(
                settings.max_concurrent_turns_per_user,
                what="chat requests waiting for an answer per user",
                type_="too-many-turns",
            ),
            streams=ConcurrencyLimit(
                settings.max_sse_per_key,
                what="open event streams per key",
                type_="too-many-streams",
            ),
        )


def rate_limited(tokens: float, per_second: float) -> Problem:
    """The 429 of a spent bucket holding `tokens`, with the wait for the next one."""
    wait = math.ceil((1 - tokens) / per_second)
    return Problem(
        429,
        f"too many requests; retry in {wait} s",
        type_="rate-limited",
        headers={"Retry-After": str(wait)},
    )


def too_many(limit: int, what: str, type_: str) -> Problem:
    """The 429 of a key that holds all its `limit` places."""
    return Problem(
        429,
        f"at most {limit} {what} at once; one must end first",
        type_=type_,
        headers={"Retry-After": "1"},
    )


def check_message(text: str, *limits: int) -> None:
    """Refuse a message longer than the smallest of `limits` (0 means none).

    Raises:
        Problem: 422 `message-too-long`, as the session workflow would answer.
    """
    limit = min((n for n in limits if n), default=0)
    if limit and len(text) > limit:
        raise Problem(
            422,
            f"the message has {len(text)} characters; the limit is {limit}",
            type_="message-too-long",
        )
