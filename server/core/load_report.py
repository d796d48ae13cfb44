"""How hard the server is pressed, as the load monitor (``server.policy.load``) reports it and
sessions and the wire protocol see it. Plain data."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LoadLevel(enum.IntEnum):
    """How hard the server is pressed; higher values shed more partial work."""

    NORMAL = 0
    PARTIALS_SLOWED = 1
    PARTIALS_PAUSED = 2

    @property
    def wire_name(self) -> str:
        return {0: "normal", 1: "slowed", 2: "paused"}[self.value]


@dataclass(frozen=True, slots=True)
class LoadReport:
    level: LoadLevel
    reason: str
    final_latency_p95_ms: float | None
    final_load: float
    finals_queued: int

    def as_dict(self) -> dict[str, object]:
        return {
            "level": self.level.name.lower(),
            "partials": self.level.wire_name,
            "reason": self.reason,
            "final_latency_p95_ms": (
                None if self.final_latency_p95_ms is None else round(self.final_latency_p95_ms)
            ),
            "final_load": round(self.final_load, 3),
            "finals_queued": self.finals_queued,
        }
