"""What every endpoint of one running server shares, built once by ``create_app``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from server.core.load_report import LoadLevel, LoadReport
from server.policy.auth import Authenticator, KeyStore, TokenSigner
from server.policy.limits import SessionCounter
from server.policy.load import LoadMonitor
from server.runtime.metrics import Metrics
from server.runtime.scheduler import InferenceRecord, InferenceScheduler
from server.settings import AuthSettings, ServerSettings, SessionLimits, StreamingSettings

LoadListener = Callable[[LoadReport], None]


@dataclass
class ServerContext:
    streaming: StreamingSettings
    auth: AuthSettings
    limits: SessionLimits
    scheduler: InferenceScheduler
    served_models: tuple[str, ...]
    authenticator: Authenticator
    sessions: SessionCounter
    metrics: Metrics
    load: LoadMonitor
    # Told when the load level changes (the web layer's live sessions).
    load_listeners: list[LoadListener] = field(default_factory=list)
    # Set when the server is shutting down: new sessions are refused, open ones drained.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    load_report: LoadReport = field(
        default_factory=lambda: LoadReport(LoadLevel.NORMAL, "", None, 0.0, 0)
    )

    @classmethod
    def build(cls, settings: ServerSettings, scheduler: InferenceScheduler) -> ServerContext:
        auth = settings.auth
        keys = KeyStore.build([key.get_secret_value() for key in auth.api_keys], auth.api_key_file)
        secret = auth.token_secret.get_secret_value().encode() if auth.token_secret else None
        limits = settings.limits
        return cls(
            streaming=settings.streaming,
            auth=auth,
            limits=limits,
            scheduler=scheduler,
            load=LoadMonitor(settings.load, workers=scheduler.workers),
            served_models=(settings.served_model,),
            authenticator=Authenticator(keys, TokenSigner(secret)),
            sessions=SessionCounter(limits),
            metrics=Metrics(),
        )

    def record_inference(self, record: InferenceRecord) -> None:
        """Told by the scheduler of every finished request: metrics, and the finals' load (from
        the whole round trip: a replica's queue is latency the finals feel)."""
        self.metrics.record_inference(
            record.backend,
            record.kind,
            record.run_s - record.backend_queue_s,
            record.queue_s + record.backend_queue_s,
            record.audio_s,
        )
        if record.kind == "final":
            self.load.receive_final_run(record.run_s, time.monotonic(), record.session_id)

    def update_load(self) -> None:
        """Re-read the load; tell every session when the level changes."""
        self.load.receive_queue(self.scheduler.finals_queued)
        report = self.load.report(time.monotonic())
        self.metrics.record_load(int(report.level), report.final_load)
        changed = report.level is not self.load_report.level
        self.load_report = report
        if changed:
            for listener in list(self.load_listeners):
                listener(report)

    async def watch_load(self, interval_s: float = 0.5) -> None:
        while True:
            self.update_load()
            await asyncio.sleep(interval_s)
