"""Admission control and honest degradation: pure arithmetic over what the server measured.

The server does not guess its capacity; it watches two things over the last ``load_window_s``:

- the finals' latency (from the end of speech plus the silence window to the final), which is
  what a person feels, and
- the finals' compute load: seconds of model time spent on finals per second of wall time and
  per worker. Finals are the work that cannot be skipped; partials fill whatever is left and
  thin out by themselves, so they are no measure of headroom.

Levels, and the rules that move between them (checked at every ``level`` call):

    level            entered when (any)                          partials
    ---------------  ------------------------------------------  ---------------------------
    normal           none of the below for ``load_recover_s``    every partial_interval_ms
    partials_slowed  final p95 > budget / 2                      at most every 2x the interval
                     final load > max_final_load / 2
    partials_paused  final p95 > budget                          none: finals get every worker
                     finals queued > 2 x workers
    ---------------------------------------------------------------------------------------
    A level is entered at once; it is left (one step down) only after its condition has been
    clear for ``load_recover_s``, so sessions are not told "degraded, restored, degraded" every
    second.

Admission judges the load that exists now: the figures of the sessions still open (a session's
finals leave the window when it closes; REST requests age out with it), with no hysteresis. A new
session is refused (``server_overloaded``) when those figures would pause partials, or when the
final load projected for one more session passes ``max_final_load``, or when a crowd arrives
faster than its load can be measured. A server with no session open admits at once.

Sessions whose load is not yet known: a session shows its load with its first final, seconds
after it opens. Until then it is "unmeasured": open, admitted within the last window, with no
final of its own in it (an older session with no final is a quiet listener, and costs nothing).
At most ``admission_burst`` sessions may be unmeasured at once, so a crowd that connects in the
same few seconds comes in that many at a time, each group judged by the finals of the one
before, instead of all at once on a load of zero. The projection counts each unmeasured session
(and the new one) at the average share of the others.
"""

from __future__ import annotations

import math
from collections import deque

from server.core.errors import LimitExceeded
from server.core.load_report import LoadLevel, LoadReport
from server.settings import LoadSettings

# Fewer finals than this in the window say nothing about their latency.
MIN_FINALS_FOR_LATENCY = 3


class LoadMonitor:
    """Measured headroom. Times are seconds on any monotonic clock the caller passes in."""

    def __init__(self, policy: LoadSettings, *, workers: int) -> None:
        self.policy = policy
        self.workers = max(1, workers)
        # (at, latency_s, session) and (finished at, run_s, session); session "" for REST.
        self._latencies: deque[tuple[float, float, str]] = deque()
        self._final_runs: deque[tuple[float, float, str]] = deque()
        self._finals_queued = 0
        self._level = LoadLevel.NORMAL
        self._reason = ""
        self._clear_since: float | None = None
        self._first_at: float | None = None
        self._admitted_at: deque[float] = deque()

    # ------------------------------------------------------------------ inputs

    def receive_final_latency(self, latency_s: float, now: float, session_id: str = "") -> None:
        self._latencies.append((now, latency_s, session_id))

    def receive_final_run(self, run_s: float, now: float, session_id: str = "") -> None:
        if self._first_at is None:
            self._first_at = now - run_s
        self._final_runs.append((now, run_s, session_id))

    def forget_session(self, session_id: str) -> None:
        """A session closed: its finals no longer say anything about the load to come (a
        burst of sessions that all ended would otherwise refuse the next burst)."""
        for samples in (self._latencies, self._final_runs):
            kept = [sample for sample in samples if sample[2] != session_id]
            samples.clear()
            samples.extend(kept)

    def receive_queue(self, finals_queued: int) -> None:
        self._finals_queued = finals_queued

    # ------------------------------------------------------------------ outputs

    def report(self, now: float) -> LoadReport:
        """The level at ``now`` (moving it by the rules above) and the figures behind it."""
        self._forget_before(now - self.policy.load_window_s)
        p95 = self.final_latency_p95_ms()
        load = self.final_load(now)
        wanted, reason = self._wanted_level(p95, load)
        if wanted >= self._level:
            # At or above the current level: taken at once, and the recovery clock restarts.
            self._level, self._reason = wanted, reason or self._reason
            self._clear_since = None
        elif self._clear_since is None:
            self._clear_since = now
        elif now - self._clear_since >= self.policy.load_recover_s:
            # One step down per ``load_recover_s`` of calm.
            self._level = LoadLevel(self._level - 1)
            self._reason = reason if wanted == self._level else "load is falling"
            self._clear_since = now
        return LoadReport(self._level, self._reason, p95, load, self._finals_queued)

    def admit(self, active_sessions: int, now: float) -> None:
        """Raise ``LimitExceeded`` if one more session would push finals past their budget.
        A server with no session always admits: the load that exists now is none."""
        self._forget_before(now - self.policy.load_window_s)
        if self.policy.admission and active_sessions > 0:
            self._judge(active_sessions, now)
        self._admitted_at.append(now)

    def _judge(self, active_sessions: int, now: float) -> None:
        load = self.final_load(now)
        level, reason = self._wanted_level(self.final_latency_p95_ms(), load)
        if level is LoadLevel.PARTIALS_PAUSED:
            raise LimitExceeded(
                f"the server is overloaded ({reason}); try again later or another server",
                code="server_overloaded",
                limit="final_latency_budget_ms",
            )
        measured = len({session for _, _, session in self._final_runs if session})
        unmeasured = min(max(0, active_sessions - measured), len(self._admitted_at))
        if unmeasured >= self.policy.admission_burst:
            raise LimitExceeded(
                f"{unmeasured} sessions opened in the last {self.policy.load_window_s:g} s have "
                "not yet shown their load (admission_burst); try again in a few seconds",
                code="server_overloaded",
                limit="admission_burst",
            )
        if load:
            # The load is the known sessions' (the measured and the quiet); each unmeasured
            # session, and the new one, is counted at their average share.
            known = max(1, active_sessions - unmeasured)
            projected = load * (active_sessions + 1) / known
            if projected > self.policy.max_final_load:
                raise LimitExceeded(
                    f"one more session would put the finals' load at {projected:.0%} of the "
                    f"server's capacity, over max_final_load ({self.policy.max_final_load:.0%}); "
                    "try again later or another server",
                    code="server_overloaded",
                    limit="max_final_load",
                )

    def final_latency_p95_ms(self) -> float | None:
        """The finals' latency p95 over the window. With fewer than 20 finals that would be
        the slowest one, and one slow final (decoded again after a loop or a failed
        threshold) is no load: the second slowest stands for it then."""
        if len(self._latencies) < MIN_FINALS_FOR_LATENCY:
            return None
        ordered = sorted(latency for _, latency, _ in self._latencies)
        rank = math.ceil(0.95 * len(ordered))
        return ordered[min(rank, len(ordered) - 1) - 1] * 1000

    def final_load(self, now: float) -> float:
        """Model seconds spent on finals per wall second per worker, over the window."""
        if not self._final_runs or self._first_at is None:
            return 0.0
        busy_s = sum(run_s for _, run_s, _ in self._final_runs)
        # A server up for less than the window has measured only that long.
        span_s = max(1.0, min(self.policy.load_window_s, now - self._first_at))
        return busy_s / (span_s * self.workers)

    # ------------------------------------------------------------------ internals

    def _wanted_level(self, p95_ms: float | None, load: float) -> tuple[LoadLevel, str]:
        budget = self.policy.final_latency_budget_ms
        if p95_ms is not None and p95_ms > budget:
            return LoadLevel.PARTIALS_PAUSED, f"final latency p95 {p95_ms:.0f} ms > {budget:g} ms"
        if self._finals_queued > 2 * self.workers:
            return LoadLevel.PARTIALS_PAUSED, f"{self._finals_queued} finals waiting for a worker"
        if p95_ms is not None and p95_ms > budget / 2:
            return (
                LoadLevel.PARTIALS_SLOWED,
                f"final latency p95 {p95_ms:.0f} ms > {budget / 2:g} ms",
            )
        if load > self.policy.max_final_load / 2:
            return LoadLevel.PARTIALS_SLOWED, f"finals use {load:.0%} of the model's time"
        return LoadLevel.NORMAL, ""

    def _forget_before(self, cutoff: float) -> None:
        for samples in (self._latencies, self._final_runs):
            while samples and samples[0][0] < cutoff:
                samples.popleft()
        while self._admitted_at and self._admitted_at[0] < cutoff:
            self._admitted_at.popleft()
