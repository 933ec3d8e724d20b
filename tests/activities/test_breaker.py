"""The circuit breaker of one model: closed, open, half-open, closed again."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities._breaker import CircuitBreaker, CircuitBreakers, counts_against
from keel.formation import CircuitBreakerConfig
from keel.names import ActivityErrors


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, failures: int = 3) -> CircuitBreaker:
    config = CircuitBreakerConfig(failures=failures, window_s=10, open_s=30)
    return CircuitBreaker(config, clock=clock)


def test_failures_within_the_window_open_the_circuit() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        assert breaker.admit("m") is False
        breaker.failed()
    assert breaker.state == "closed"
    breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(ApplicationError) as info:
        breaker.admit("m")
    assert info.value.type == ActivityErrors.CIRCUIT_OPEN and info.value.non_retryable


def test_failures_spread_wider_than_the_window_do_not() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(5):
        breaker.failed()
        clock.now += 6
    assert breaker.state == "closed"


def test_a_success_forgets_earlier_failures() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state == "closed"


def test_after_open_s_one_probe_goes_through_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = _breaker(clock, failures=1)
    breaker.failed()
    clock.now += 30
    assert breaker.state == "half-open"
    assert breaker.admit("m") is True
    with pytest.raises(ApplicationError):
        breaker.admit("m")  # one probe at a time
    breaker.failed()
    assert breaker.state == "open"
    clock.now += 29
    with pytest.raises(ApplicationError):
        breaker.admit("m")
    clock.now += 1
    assert breaker.admit("m") is True
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.admit("m") is False


def test_a_probe_that_tells_nothing_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = _breaker(clock, failures=1)
    breaker.failed()
    clock.now += 30
    assert breaker.admit("m") is True
    breaker.released()
    assert breaker.admit("m") is True


def test_only_what_retries_counts_against_the_provider() -> None:
    assert counts_against(ApplicationError("503", type="ProviderServerError"))
    assert counts_against(ApplicationError("refused", type="ProviderConnectionError"))
    assert not counts_against(
        ApplicationError("400", type="ProviderBadRequest", non_retryable=True)
    )
    assert not counts_against(ValueError("not from the provider"))


def test_breakers_are_per_model_and_follow_their_config() -> None:
    breakers = CircuitBreakers(clock=Clock())
    config = CircuitBreakerConfig(failures=1)
    a = breakers.get("a", config)
    a.failed()
    assert breakers.get("a", config) is a and a.state == "open"
    assert breakers.get("b", config).state == "closed"
    assert breakers.get("a", CircuitBreakerConfig(failures=2)).state == "closed"
