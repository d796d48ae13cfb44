"""Read-only viewers of one live session (shared captions) or of a room: each gets every final
so far, then partials and finals as they come, until the session (room) ends or the viewer
leaves. Listeners (a room the session speaks in) are told what viewers are told."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from server.core.errors import LimitExceeded
from server.core.protocol import CLOSE_NORMAL
from server.settings import StreamingSettings
from server.web.ws_link import WebsocketLink

MAX_WATCHERS = 200
Listener = Callable[[dict[str, Any]], None]


class Watchers:
    def __init__(
        self,
        settings: StreamingSettings,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        max_viewers: int = MAX_WATCHERS,
        full: LimitExceeded | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.max_viewers = max_viewers
        self.full = full or LimitExceeded(
            f"this session already has {max_viewers} viewers",
            code="too_many_watchers",
            limit="max_watchers",
        )
        self.listeners: list[Listener] = []
        self._links: set[WebsocketLink] = set()

    @property
    def count(self) -> int:
        return len(self._links)

    def broadcast(self, message: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(message)
        for watcher in list(self._links):
            watcher.send(message)

    def close_all(self, closed_message: dict[str, Any], reason: str = "session ended") -> None:
        for listener in list(self.listeners):
            listener(closed_message)
        for watcher in list(self._links):
            watcher.send(closed_message)
            watcher.close(CLOSE_NORMAL, reason)

    async def serve(self, websocket: WebSocket, first: list[dict[str, Any]]) -> None:
        """Serve one viewer: the ``first`` messages (a start message, every final so far),
        then what ``broadcast`` sends, until it leaves."""
        if len(self._links) >= self.max_viewers:
            raise self.full
        link = WebsocketLink(
            websocket,
            max_pending=self.settings.max_pending_events,
            send_timeout_s=self.settings.send_timeout_s,
            log=self.log,
        )
        for message in first:
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
