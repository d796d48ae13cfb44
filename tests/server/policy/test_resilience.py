"""Retry timing and the circuit breaker's rules, with a hand-driven clock."""

from __future__ import annotations

import random

from server.policy.resilience import Backoff, CircuitBreaker, CircuitState


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after():
    backoff = Backoff(base_s=0.1, max_s=1.0)
    rng = random.Random(1)
    for attempt, ceiling in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        delay = backoff.delay_s(attempt, rng)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.delay_s(0, rng, retry_after_s=3.0) == 3.0  # a floor, never shortened
    assert len({round(backoff.delay_s(3, rng), 6) for _ in range(20)}) > 10  # jittered


def test_circuit_opens_after_consecutive_failures_only():
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success()
    breaker.record_failure(0)
    breaker.record_failure(0)
    assert breaker.state is CircuitState.CLOSED and breaker.allow(0)
    breaker.record_failure(1)
    assert breaker.state is CircuitState.OPEN and not breaker.allow(5)


def test_half_open_lets_one_probe_through_and_closes_or_reopens():
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.record_failure(0)
    assert breaker.allow(10) and breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allow(11)  # the probe is out
    breaker.record_failure(12)
    assert breaker.state is CircuitState.OPEN and not breaker.allow(21)
    assert breaker.allow(22)
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow(22)


def test_a_lost_probe_does_not_keep_the_circuit_shut_forever():
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    breaker.trip(0)
    assert breaker.allow(10)  # probe sent, then cancelled: no outcome ever recorded
    assert not breaker.allow(15)
    assert breaker.allow(20)
