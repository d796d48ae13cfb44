"""One websocket's outgoing side: a bounded outbox drained by a writer task.

A client that stops reading fills only its own outbox; past ``max_pending`` events, or a send
that takes longer than ``send_timeout_s``, it is disconnected with 1008 and a reason, without
slowing anyone else. A session outlives its links when it is resumable (``live_session``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.core.protocol import CLOSE_POLICY


class _CloseRequest:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class WebsocketLink:
    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_pending: int,
        send_timeout_s: float,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.websocket = websocket
        self.max_pending = max_pending
        self.send_timeout_s = send_timeout_s
        self.log = log
        self.closing = False
        self.close_code: int | None = None
        self.sent_types: set[str] = set()  # message types written to the socket
        self._outbox: asyncio.Queue[dict[str, Any] | _CloseRequest] = asyncio.Queue()

    def send(self, message: dict[str, Any]) -> None:
        if self.closing:
            return
        if self._outbox.qsize() >= self.max_pending:
            self.log.warning("client is not reading; disconnecting")
            self.close(CLOSE_POLICY, "client is not reading its events")
            return
        self._outbox.put_nowait(message)

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.close_code = code
            self._outbox.put_nowait(_CloseRequest(code, reason))

    async def run_writer(self) -> None:
        timeout = self.send_timeout_s
        while True:
            item = await self._outbox.get()
            if isinstance(item, _CloseRequest):
                break
            try:
                await asyncio.wait_for(self.websocket.send_text(json.dumps(item)), timeout)
            except TimeoutError:
                self.log.warning("send timed out; disconnecting")
                item = _CloseRequest(CLOSE_POLICY, "client is not reading its events")
                self.close_code = item.code
                break
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            self.sent_types.add(item["type"])
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.websocket.close(item.code, reason=close_reason(item.reason)), timeout
                )


async def refuse(websocket: WebSocket, error: dict[str, Any], close_code: int) -> None:
    """Answer a connection that may not go on: one ``error`` event, then the close."""
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(error))
        await websocket.close(close_code, reason=close_reason(str(error.get("message", ""))))


def close_reason(text: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")
