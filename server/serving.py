"""Running the app under uvicorn with a graceful shutdown.

On SIGTERM (or SIGINT) uvicorn would close every websocket at once with 1012. This server
first stops listening and drains the streaming sessions (``ServerContext.drain``: each open
utterance is finalized, its final sent, then ``session.closed`` with reason
``server_shutdown``), and only then lets uvicorn close what is left, all within the grace
period.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from fastapi import FastAPI

from server.context import ServerContext

log = logging.getLogger("streamscribe")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, context: ServerContext, grace_s: float) -> None:
        super().__init__(config)
        self.context = context
        self.grace_s = grace_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections
        open_sessions = len(self.context.live_sessions)
        if open_sessions:
            log.info("draining %d session(s), up to %.0f s", open_sessions, self.grace_s)
        await self.context.drain(self.grace_s)
        await super().shutdown(sockets)


def build_server(
    app: FastAPI, *, host: str, port: int, log_level: str, **config: object
) -> DrainingServer:
    settings = app.state.settings
    uvicorn_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        # Our own limit gives a clear error below this; above it the protocol refuses.
        ws_max_size=max(16 * 1024 * 1024, settings.max_message_bytes * 2),
        timeout_graceful_shutdown=max(1.0, settings.shutdown_grace_s),
        **config,  # type: ignore[arg-type]
    )
    return DrainingServer(uvicorn_config, app.state.context, settings.shutdown_grace_s)
