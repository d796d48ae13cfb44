"""Read-only viewers of one live session (shared captions): each gets every final so far, then
partials and finals as they come, until the session ends or the viewer leaves."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.websockets import WebSocket

from server.core import protocol
from server.core.errors import LimitExceeded
from server.core.protocol import CLOSE_NORMAL
from server.settings import StreamingSettings
from server.web.ws_link import WebsocketLink

MAX_WATCHERS = 200


class Watchers:
    def __init__(
        self,
        session_id: str,
        settings: StreamingSettings,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.session_id = session_id
        self.settings = settings
        self.log = log
        self._links: set[WebsocketLink] = set()

    def broadcast(self, message: dict[str, Any]) -> None:
        for watcher in list(self._links):
            watcher.send(message)

    def close_all(self, closed_message: dict[str, Any]) -> None:
        for watcher in list(self._links):
            watcher.send(closed_message)
            watcher.close(CLOSE_NORMAL, "session ended")

    async def serve(self, websocket: WebSocket, finals: list[dict[str, Any]]) -> None:
        """Serve one viewer: ``finals`` so far, then what ``broadcast`` sends, until it leaves."""
        if len(self._links) >= MAX_WATCHERS:
            raise LimitExceeded(
                f"this session already has {MAX_WATCHERS} viewers",
                code="too_many_watchers",
                limit="max_watchers",
            )
        link = WebsocketLink(
            websocket,
            max_pending=self.settings.max_pending_events,
            send_timeout_s=self.settings.send_timeout_s,
            log=self.log,
        )
        link.send(protocol.watch_started(self.session_id, len(finals)))
        for message in finals:
            link.send(message)
        self._links.add(link)
        writer = asyncio.create_task(link.run_writer())
        reader = asyncio.create_task(_read_until_closed(websocket))
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)


async def _read_until_closed(websocket: WebSocket) -> None:
    """A viewer sends nothing that matters; reading notices when it leaves."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
