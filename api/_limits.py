"""Limits of one API process: a token bucket per key, and counters of concurrent holders."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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

    def check(self, key: str | None) -> None:
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
            wait = math.ceil((1 - tokens) / self._rate)
            raise Problem(
                429,
                f"too many requests; retry in {wait} s",
                type_="rate-limited",
                headers={"Retry-After": str(wait)},
            )
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

    def active(self, key: str) -> int:
        """How many holders `key` has now."""
        return self._held.get(key, 0)

    @contextmanager
    def hold(self, key: str | None) -> Iterator[None]:
        """Hold one place for `key` until the block ends; None is not limited.

        Raises:
            Problem: 429 with Retry-After when `key` already holds `limit` places;
                raised on entry, before anything is started.
        """
        if key is None:
            yield
            return
        count = self.active(key)
        if self.limit and count >= self.limit:
            raise Problem(
                429,
                f"at most {self.limit} {self._what} at once; one must end first",
                type_=self._type,
                headers={"Retry-After": "1"},
            )
        self._held[key] = count + 1
        try:
            yield
        finally:
            remaining = self._held[key] - 1
            if remaining:
                self._held[key] = remaining
            else:
                del self._held[key]


@dataclass
class Limits:
    """The in-process limits of one app."""

    rate: RateLimiter
    turns: ConcurrencyLimit
    """Chat requests waiting for an answer, per user."""
    streams: ConcurrencyLimit
    """Open SSE connections, per key."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the settings ask for."""
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
