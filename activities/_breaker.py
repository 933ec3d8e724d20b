"""Circuit breakers of one worker, one per model: a failing provider gets a rest, not calls.

Per worker and in memory, as DESIGN section 10 fixes: each worker learns by itself that
a provider fails, at the cost of `failures` calls; sharing the state would put Redis
on the path of every model call.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from temporalio.exceptions import ApplicationError

from keel.formation import CircuitBreakerConfig
from keel.names import ActivityErrors


class CircuitBreaker:
    """Closed, open or half-open, for one model.

    Closed: calls go through; `failures` failed calls within `window_s` open it.
    Open: calls fail at once (`CircuitOpen`) for `open_s`. Half-open: then one call,
    the probe, goes through while the others still fail at once; its success closes
    the circuit, its failure opens it for another `open_s`.

    Args:
        config: The thresholds.
        clock: Seconds, monotonic; tests pass their own.
    """

    def __init__(
        self, config: CircuitBreakerConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._failures: deque[float] = deque()
        self._open_until: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open` (for logs and tests)."""
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until or self._probing else "half-open"

    def admit(self, model: str) -> bool:
        """Let one call through, or refuse it while the circuit is open.

        Returns:
            True when the call is the half-open probe (report its outcome).

        Raises:
            ApplicationError: `CircuitOpen`, non-retryable: the workflow moves on to
                the model's fallbacks instead of waiting out the circuit.
        """
        if self._open_until is None:
            return False
        now = self._clock()
        if now >= self._open_until and not self._probing:
            self._probing = True
            return True
        wait = max(1, math.ceil(self._open_until - now))
        raise ApplicationError(
            f"the circuit of model {model} is open after repeated failures; it is tried"
            f" again in about {wait} s",
            type=ActivityErrors.CIRCUIT_OPEN,
            non_retryable=True,
        )

    def succeeded(self) -> None:
        """A call answered: the circuit closes and forgets earlier failures."""
        self._failures.clear()
        self._open_until = None
        self._probing = False

    def failed(self) -> None:
        """A call failed the way an unhealthy provider fails (see `counts_against`)."""
        now = self._clock()
        if self._probing or self._open_until is not None:
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and self._failures[0] <= now - self.config.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.config.failures:
            self._open(now)

    def released(self) -> None:
        """A probe ended without telling anything (cancelled, a bad request): probe again."""
        self._probing = False

    def _open(self, now: float) -> None:
        self._open_until = now + self.config.open_s
        self._probing = False
        self._failures.clear()


def counts_against(error: BaseException) -> bool:
    """Whether a failed call says the provider is unhealthy: what retries (5xx, timeouts,
    refused connections, 429), not what the request itself got wrong (other 4xx)."""
    return isinstance(error, ApplicationError) and not error.non_retryable


class CircuitBreakers:
    """The breakers of one worker, by model name, made on first use."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, model: str, config: CircuitBreakerConfig) -> CircuitBreaker:
        """The breaker of `model`; a new one when its thresholds changed."""
        breaker = self._breakers.get(model)
        if breaker is None or breaker.config != config:
            breaker = self._breakers[model] = CircuitBreaker(config, clock=self._clock)
        return breaker
