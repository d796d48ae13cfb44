"""The reading side of a live session: one client socket's messages, under the session's
limits, turned into calls on the sans-I/O session; what those return goes to the live
session's ``dispatch``."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.core import protocol
from server.core.errors import InvalidMessage, LimitExceeded, PeerError
from server.core.protocol import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY
from server.policy.limits import check_message_size
from server.web.inbound import receive_within_limits
from server.web.rooms import ROOM_PARAMS, join_room
from server.web.session_choices import check_session_choices

if TYPE_CHECKING:  # the live session builds its reader and hands it itself
    from server.web.live_session import LiveSession

# Close codes a client sends on purpose (closing the tab, quitting): the session ends with
# them. Anything else (1006: the connection just died) leaves the session resumable.
CLIENT_ENDED = frozenset({CLOSE_NORMAL, CLOSE_GOING_AWAY})
ACK_EVERY_S = 1.0


class ClientReader:
    """Reads one socket of ``live`` until it closes. A resume makes a new reader; the audio
    count and the rate limit belong to the session and carry over."""

    def __init__(self, live: LiveSession, websocket: WebSocket) -> None:
        self.live = live
        self.websocket = websocket
        self.session = live.session
        self.limits = live.context.limits

    async def run(self) -> None:
        live, session = self.live, self.session
        while True:
            try:
                message = await self._receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            except LimitExceeded as exc:
                self._end_for_limit(exc)
                if session.closing:
                    continue  # the finals of what was said are still coming
                return
            if message["type"] == "websocket.disconnect":
                if message.get("code") in CLIENT_ENDED:
                    live.resumable = False  # a deliberate close: nothing to resume
                elif not session.closed:
                    live.log.info("session %s: connection lost mid-stream", live.session_id)
                return
            if session.closing and live.close_reason != "client_closed":
                continue  # the server ended the stream (a limit, shutdown): input is moot
            if not self._receive_message(message):
                return

    async def _receive(self) -> MutableMapping[str, Any]:
        if self.session.closing:
            return await self.websocket.receive()  # finals are on their way: no more limits
        elapsed_s = time.monotonic() - self.live.opened_at
        return await receive_within_limits(self.websocket, self.limits, elapsed_s)

    def _receive_message(self, message: MutableMapping[str, Any]) -> bool:
        """Handle one client message; ``False`` when the session cannot go on."""
        live = self.live
        try:
            if message.get("bytes") is not None:
                self._receive_audio(message["bytes"])
            elif message.get("text") is not None:
                self._check_text_size(len(message["text"]))
                self._receive_text(message["text"])
        except LimitExceeded as exc:
            if exc.code == "message_too_large":
                live.send(live.wire.error(exc.code, exc.message))
            else:
                self._end_for_limit(exc)
        except PeerError as exc:
            live.send(live.wire.error(exc.code, exc.message, param=exc.param))
        except Exception:
            live.log.exception("session %s: internal error", live.session_id)
            live.send(live.wire.error("internal_error", "internal server error"))
            live.close(CLOSE_INTERNAL_ERROR, "internal server error")
            return False
        return True

    def _join_room(self, params: dict[str, Any]) -> None:
        """``session.update`` with ``room_id``, ``join_token`` and ``speaker``: speak in that
        room from now on. A full room is an error for this update, not the session's end."""
        live = self.live
        if live.rooms is None:
            raise InvalidMessage("rooms are not served here", code="invalid_session")
        try:
            room = live.rooms.room_to_join(params)
        except LimitExceeded as exc:
            raise InvalidMessage(exc.message, code=exc.code) from None
        if room is not None:
            join_room(live, room, str(params.get("speaker", "")))

    def _check_text_size(self, size: int) -> None:
        check_message_size(size, self.limits)

    def _check_audio_size(self, size: int) -> None:
        check_message_size(size, self.limits)

    def _receive_audio(self, data: bytes) -> None:
        live = self.live
        # Numbered before any check: the client counts every binary message it sent, so a
        # refused one must take its number too, or a resume would send audio twice.
        live.received.number()
        self._check_audio_size(len(data))
        seconds = self.session.options.audio_seconds(len(data))
        live.audio_rate.receive(seconds, time.monotonic())
        live.dispatch(self.session.receive_audio(data))
        live.received.receive(seconds)
        live.metrics.record_audio(seconds)
        live.unacked_s += seconds
        if live.unacked_s >= ACK_EVERY_S:
            self._ack()

    def _ack(self) -> None:
        """``input_audio.ack``: what is processed, and what is final-safe."""
        live = self.live
        live.unacked_s = 0.0
        final_safe = live.received.advance(self.session.final_safe_samples)
        live.send(protocol.audio_ack(live.session_id, live.received.count, final_safe))

    def _end_for_limit(self, exc: LimitExceeded) -> None:
        """A limit ends the stream: the error names it, and what was said still gets its
        finals before ``session.closed`` (audio-rate abuse is closed at once)."""
        live = self.live
        live.log.info("session %s: %s", live.session_id, exc.message)
        live.send(live.wire.error(exc.code, exc.message))
        if exc.code == "audio_rate_exceeded":
            live.close(CLOSE_POLICY, exc.message)
            return
        live.close_reason = exc.code
        if not self.session.closing:
            live.dispatch(self.session.receive_end_of_stream())

    def _receive_text(self, text: str) -> None:
        live, session = self.live, self.session
        message = protocol.parse_client_message(text)
        if isinstance(message, protocol.SessionUpdate):
            changes = {k: v for k, v in message.changes.items() if k not in ROOM_PARAMS}
            check_session_choices(live.context, changes)
            wanted = session.options.updated(changes)
            live.principal.check_pinned(wanted.model_dump(include=set(changes)))
            if len(changes) < len(message.changes):
                self._join_room(message.changes)
            live.dispatch(session.receive_update(changes))
            live.send(protocol.session_updated(live.session_id, session.options))
        elif isinstance(message, protocol.Commit):
            self._ack()
            live.dispatch(session.receive_commit())
        elif isinstance(message, protocol.Retry):
            live.dispatch(session.receive_retry(message.utterance_id))
        else:
            self._ack()
            live.dispatch(session.receive_end_of_stream())
