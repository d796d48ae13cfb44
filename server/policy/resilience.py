"""Retry timing and a circuit breaker for the remote backend. Pure logic: the caller passes
the clock in, so both are tested without sleeping.

Circuit breaker rules:

    state       on success            on failure                          allows a request
    ----------  --------------------  ----------------------------------  ----------------------
    CLOSED      reset failure count   count; at ``failure_threshold``     always
                                      consecutive failures -> OPEN
    OPEN        (no requests)         (no requests)                       after ``cooldown_s``:
                                                                          -> HALF_OPEN, one probe
    HALF_OPEN   -> CLOSED             -> OPEN, cooldown starts again      no (the probe is out),
                                                                          unless it is lost for
                                                                          ``cooldown_s``

``trip`` opens the circuit at once (a 401: retrying with the same key cannot help).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits a random time up to
    ``base_s * 2**n`` (capped at ``max_s``), so clients that failed together do not retry
    together. A server's ``Retry-After`` is a floor, never shortened."""

    base_s: float = 0.2
    max_s: float = 5.0

    def delay_s(
        self, attempt: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float:
        ceiling = min(self.max_s, self.base_s * (2**attempt))
        delay = rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int = 3, cooldown_s: float = 10.0) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_s = cooldown_s
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0

    def allow(self, now: float) -> bool:
        """May a request go to the remote now? In HALF_OPEN only the one probe may."""
        if self.state is CircuitState.CLOSED:
            return True
        if now - self._opened_at >= self.cooldown_s:
            # From OPEN: time for a probe. From HALF_OPEN: the probe was lost (cancelled
            # with its session), so another may go.
            self.state = CircuitState.HALF_OPEN
            self._opened_at = now
            return True
        return False

    def record_success(self) -> None:
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if (
            self.state is CircuitState.HALF_OPEN
            or self.consecutive_failures >= self.failure_threshold
        ):
            self.trip(now)

    def trip(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self._opened_at = now
