"""When each utterance's speech started and stopped, in wall time: what a live session needs to
measure its first partial and its final latency."""

from __future__ import annotations

import time

from server.core.events import UtteranceStarted, UtteranceStopped


class UtteranceClock:
    def __init__(self) -> None:
        self._started_at: dict[int, float] = {}
        self._stopped_at: dict[int, float] = {}

    def receive(self, event: UtteranceStarted | UtteranceStopped) -> None:
        times = self._started_at if isinstance(event, UtteranceStarted) else self._stopped_at
        times[event.utterance_id] = time.monotonic()

    def forget(self, utterance_id: int) -> None:
        self._started_at.pop(utterance_id, None)
        self._stopped_at.pop(utterance_id, None)

    def first_partial_s(self, utterance_id: int) -> float | None:
        """Seconds from speech start to this utterance's first partial; ``None`` after it."""
        started_at = self._started_at.pop(utterance_id, None)
        return time.monotonic() - started_at if started_at is not None else None

    def final_s(self, utterance_id: int, *, retried: bool) -> float | None:
        """Seconds from speech stop to the final. A retried final's wait includes the failure
        and the client's retry: it is no measure of the model's latency, so ``None``."""
        stopped_at = self._stopped_at.get(utterance_id)
        self.forget(utterance_id)
        if stopped_at is None or retried:
            return None
        return time.monotonic() - stopped_at
