"""Per-server and per-session limits, as pure checks. Each refusal is a ``LimitExceeded`` whose
code and message name the setting, so a client (and its operator) knows which knob it hit."""

from __future__ import annotations

from collections import Counter

from server.core.errors import LimitExceeded
from server.settings import SessionLimits


class SessionCounter:
    """Open sessions, in total and per key."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_key: Counter[str] = Counter()

    def admit(self, key_id: str, key_max_sessions: int | None = None) -> None:
        """Count a new session, or raise ``LimitExceeded`` naming the limit it would pass."""
        if self.limits.max_sessions and self.total >= self.limits.max_sessions:
            raise LimitExceeded(
                f"the server is at max_sessions ({self.limits.max_sessions}); try again later",
                code="too_many_sessions",
                limit="max_sessions",
            )
        per_key = (
            key_max_sessions if key_max_sessions is not None else self.limits.max_sessions_per_key
        )
        if per_key and self.per_key[key_id] >= per_key:
            raise LimitExceeded(
                f"this API key is at max_sessions_per_key ({per_key}); close a session first",
                code="too_many_sessions",
                limit="max_sessions_per_key",
            )
        self.total += 1
        self.per_key[key_id] += 1

    def release(self, key_id: str) -> None:
        self.total -= 1
        self.per_key[key_id] -= 1
        if self.per_key[key_id] <= 0:
            del self.per_key[key_id]


class AudioRateLimit:
    """A client may send audio at most ``speed`` times real time, plus a burst of head start
    (a reconnecting client resends what it buffered). ``speed`` 0 disables the check."""

    def __init__(self, speed: float, burst_s: float, started_at: float) -> None:
        self.speed = speed
        self.burst_s = burst_s
        self.started_at = started_at
        self.received_s = 0.0

    def receive(self, seconds: float, now: float) -> None:
        self.received_s += seconds
        if not self.speed:
            return
        allowed_s = (now - self.started_at) * self.speed + self.burst_s
        if self.received_s > allowed_s:
            raise LimitExceeded(
                f"audio is arriving faster than max_audio_speed ({self.speed:g}x real time)",
                code="audio_rate_exceeded",
                limit="max_audio_speed",
            )


def check_message_size(size: int, limits: SessionLimits) -> None:
    if limits.max_message_bytes and size > limits.max_message_bytes:
        raise LimitExceeded(
            f"a message of {size} bytes is over max_message_bytes ({limits.max_message_bytes}); "
            "send audio in smaller pieces",
            code="message_too_large",
            limit="max_message_bytes",
        )


def check_session_length(elapsed_s: float, limits: SessionLimits) -> None:
    if limits.max_session_s and elapsed_s >= limits.max_session_s:
        raise session_too_long(limits)


def session_too_long(limits: SessionLimits) -> LimitExceeded:
    return LimitExceeded(
        f"the session reached max_session_s ({limits.max_session_s:g} s)",
        code="session_too_long",
        limit="max_session_s",
    )
