"""What every endpoint of one running server shares, built once by ``create_app``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.auth import Authenticator, KeyStore, TokenSigner
from server.limits import SessionCounter, SessionLimits
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
    live_sessions: dict[str, LiveSession] = field(default_factory=dict)
    # Set when the server is shutting down: new sessions are refused, open ones drained.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)

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
        return cls(
            settings=settings,
            scheduler=scheduler,
            served_models=(settings.served_model,),
            authenticator=Authenticator(keys, TokenSigner(secret)),
            limits=limits,
            sessions=SessionCounter(limits),
            metrics=Metrics(),
        )

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
