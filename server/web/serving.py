"""Running the app under uvicorn with a graceful shutdown.

On SIGTERM (or SIGINT) uvicorn would close every websocket at once with 1012. This server
first stops listening and drains the streaming sessions (``LiveSessions.drain``: each open
utterance is finalized, its final sent, then ``session.closed`` with reason
``server_shutdown``), and only then lets uvicorn close what is left, all within the grace
period.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from server.runtime.context import ServerContext
from server.settings import HttpSettings
from server.web.realtime_session import MAX_EVENT_CHARS as REALTIME_MAX_EVENT_CHARS
from server.web.registry import LiveSessions, Registered

log = logging.getLogger("streamscribe")


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        context: ServerContext,
        registry: LiveSessions[Registered],
        grace_s: float,
    ) -> None:
        super().__init__(config)
        self.context = context
        self.registry = registry
        self.grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections
        # New sessions are refused from here on.
        self.context.shutting_down.set()
        open_sessions = len(self.registry)
        if open_sessions:
            log.info("draining %d session(s), up to %.0f s", open_sessions, self.grace_s)
        await self.registry.drain(self.grace_s)
        await super().shutdown(sockets)


def build_server(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_level: str,
    log_config: dict[str, Any] | None = None,
) -> DrainingServer:
    """``log_config`` replaces uvicorn's own logging set-up (``None``: keep uvicorn's)."""
    settings: HttpSettings = app.state.settings.http
    limits = app.state.settings.limits
    uvicorn_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        # Our own limit gives a clear error below this; above it the protocol refuses. The
        # Realtime protocol's appends may carry OpenAI's 15 MiB of audio, base64-encoded.
        ws_max_size=max(REALTIME_MAX_EVENT_CHARS + 1024 * 1024, limits.max_message_bytes * 2),
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_s)),
        log_config=log_config if log_config is not None else uvicorn.config.LOGGING_CONFIG,
    )
    return DrainingServer(
        uvicorn_config, app.state.context, app.state.live_sessions, settings.shutdown_grace_s
    )
