"""What every endpoint of one running server shares, built once by ``create_app``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.auth import Authenticator, KeyStore, TokenSigner
from server.limits import SessionCounter, SessionLimits
from server.load import LoadLevel, LoadMonitor, LoadPolicy, LoadReport
from server.metrics import Metrics
from server.scheduler import InferenceScheduler
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.live_session import LiveSession


@dataclass
class ServerContext:
    settings: ServerSettings
    scheduler: InferenceScheduler
    served_models: tuple[str, ...]
    authenticator: Authenticator
    limits: SessionLimits
    sessions: SessionCounter
    metrics: Metrics
    load: LoadMonitor
    live_sessions: dict[str, LiveSession] = field(default_factory=dict)
    # Set when the server is shutting down: new sessions are refused, open ones drained.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    load_report: LoadReport = field(
        default_factory=lambda: LoadReport(LoadLevel.NORMAL, "", None, 0.0, 0)
    )

    @classmethod
    def build(cls, settings: ServerSettings, scheduler: InferenceScheduler) -> ServerContext:
        keys = KeyStore.build(
            [key.get_secret_value() for key in settings.api_keys], settings.api_key_file
        )
        secret = (
            settings.token_secret.get_secret_value().encode() if settings.token_secret else None
        )
        limits = SessionLimits(
            max_sessions=settings.max_sessions,
            max_sessions_per_key=settings.max_sessions_per_key,
            max_session_s=settings.max_session_s,
            max_message_bytes=settings.max_message_bytes,
            max_audio_speed=settings.max_audio_speed,
            idle_timeout_s=settings.idle_timeout_s,
        )
        policy = LoadPolicy(
            final_latency_budget_ms=settings.final_latency_budget_ms,
            max_final_load=settings.max_final_load,
            window_s=settings.load_window_s,
            recover_s=settings.load_recover_s,
            admission=settings.admission,
        )
        return cls(
            settings=settings,
            scheduler=scheduler,
            load=LoadMonitor(policy, workers=scheduler.workers),
            served_models=(settings.served_model,),
            authenticator=Authenticator(keys, TokenSigner(secret)),
            limits=limits,
            sessions=SessionCounter(limits),
            metrics=Metrics(),
        )

    def record_inference(
        self, backend: str, kind: str, run_s: float, queue_s: float, audio_s: float
    ) -> None:
        """Told by the scheduler of every finished request: metrics, and the finals' load."""
        self.metrics.record_inference(backend, kind, run_s, queue_s, audio_s)
        if kind == "final":
            self.load.receive_final_run(run_s, time.monotonic())

    def update_load(self) -> None:
        """Re-read the load; tell every session when the level changes."""
        self.load.receive_queue(self.scheduler.finals_queued)
        report = self.load.report(time.monotonic())
        self.metrics.record_load(int(report.level), report.final_load)
        changed = report.level is not self.load_report.level
        self.load_report = report
        if changed:
            for live in list(self.live_sessions.values()):
                live.receive_load(report)

    async def watch_load(self, interval_s: float = 0.5) -> None:
        while True:
            self.update_load()
            await asyncio.sleep(interval_s)

    async def drain(self, grace_s: float) -> None:
        """Stop taking sessions; let every open one finish its utterances, send its finals and
        ``session.closed``; give up on stragglers after ``grace_s``."""
        self.shutting_down.set()
        sessions = list(self.live_sessions.values())
        for live in sessions:
            live.drain("server_shutdown")
        finished = [live.finished.wait() for live in sessions]
        if finished:
            await asyncio.wait(
                [asyncio.ensure_future(waiter) for waiter in finished], timeout=grace_s
            )
