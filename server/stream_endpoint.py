"""The websocket edge of a streaming session: ``ws://HOST:PORT/v1/stream``.

One connection runs two tasks. The reader feeds binary audio and JSON messages into the
sans-I/O ``Session`` and hands its requests to the scheduler; answers come back through future
callbacks on the event loop. The writer drains a bounded outbox to the socket, so a client that
stops reading fills only its own outbox and is disconnected with a reason, without slowing
anyone else. Peer mistakes become ``error`` events; the session goes on wherever it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server import protocol
from server.errors import BackendError, InvalidMessage, PeerError
from server.events import (
    Event,
    FinalText,
    PartialText,
    RequestCancelled,
    SessionDrained,
    SessionError,
    UtteranceStarted,
    UtteranceStopped,
)
from server.scheduler import InferenceScheduler
from server.session import Session, default_detector
from server.settings import ServerSettings
from server.transcription import RequestKind, Segment, TranscribeRequest, Transcription

log = logging.getLogger("streamscribe.stream")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class _CloseRequest:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class StreamConnection:
    def __init__(
        self,
        websocket: WebSocket,
        scheduler: InferenceScheduler,
        settings: ServerSettings,
        served_models: tuple[str, ...],
    ) -> None:
        self.websocket = websocket
        self.scheduler = scheduler
        self.settings = settings
        self.served_models = served_models
        self.session_id = "sess_" + uuid.uuid4().hex[:16]
        self.session: Session | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | _CloseRequest] = asyncio.Queue()
        self._stopped_at: dict[int, float] = {}
        self._closing = False

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            self.session = self._create_session()
        except PeerError as exc:
            await self._refuse(exc.code, exc.message)
            return
        self._send(
            protocol.session_created(self.session_id, self.session.options, self.served_models[0])
        )
        reader = asyncio.create_task(self._read_loop(), name=f"{self.session_id}-reader")
        writer = asyncio.create_task(self._write_loop(), name=f"{self.session_id}-writer")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            self.scheduler.cancel_session(self.session_id)
            log.info("session %s ended", self.session_id)

    # ------------------------------------------------------------------ setup

    def _create_session(self) -> Session:
        params = dict(self.websocket.query_params)
        params.setdefault("vad", self.settings.default_vad)
        options = protocol.options_from_query(params)
        self._check_model(options.model)
        self._check_partial_backend(options.partial_backend)
        return Session(self.session_id, options, detector_factory=default_detector)

    def _check_model(self, model: str | None) -> None:
        if model is not None and model not in self.served_models:
            raise InvalidMessage(
                f"model {model!r} is not served here; available: {', '.join(self.served_models)}",
                code="model_not_found",
            )

    def _check_partial_backend(self, choice: str | None) -> None:
        available = self.scheduler.partial_backends
        if choice not in (None, "auto") and choice not in available:
            raise InvalidMessage(
                f"partial_backend {choice!r} is not available here; this server has: "
                f"{', '.join(available)}",
                code="invalid_session",
            )

    async def _refuse(self, code: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.send_text(
                json.dumps(protocol.error(self.session_id, code, message))
            )
            await self.websocket.close(CLOSE_POLICY, reason=_close_reason(message))

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        session = self.session
        assert session is not None
        while True:
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                if not session.closed:
                    log.info("session %s: client went away mid-stream", self.session_id)
                return
            try:
                if message.get("bytes") is not None:
                    self._dispatch(session.receive_audio(message["bytes"]))
                elif message.get("text") is not None:
                    self._receive_text(session, message["text"])
            except PeerError as exc:
                self._send(protocol.error(self.session_id, exc.code, exc.message))
            except Exception:
                log.exception("session %s: internal error", self.session_id)
                self._send(
                    protocol.error(self.session_id, "internal_error", "internal server error")
                )
                self._close(CLOSE_INTERNAL_ERROR, "internal server error")
                return

    def _receive_text(self, session: Session, text: str) -> None:
        message = protocol.parse_client_message(text)
        if isinstance(message, protocol.SessionUpdate):
            self._check_model(message.changes.get("model"))
            self._check_partial_backend(message.changes.get("partial_backend"))
            self._dispatch(session.receive_update(message.changes))
            self._send(protocol.session_updated(self.session_id, session.options))
        elif isinstance(message, protocol.Commit):
            self._dispatch(session.receive_commit())
        elif isinstance(message, protocol.Retry):
            self._dispatch(session.receive_retry(message.utterance_id))
        else:
            self._dispatch(session.receive_end_of_stream())

    # ------------------------------------------------------------------ core events

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TranscribeRequest):
                future = self.scheduler.submit(event, on_segment=self._progress_callback(event))
                future.add_done_callback(
                    lambda done, request=event: self._receive_answer(request, done)
                )
            elif isinstance(event, RequestCancelled):
                self.scheduler.cancel(event.request_id)
            elif isinstance(event, SessionDrained):
                self._send(protocol.session_closed(self.session_id, "client_closed"))
                self._close(CLOSE_NORMAL, "session closed")
            elif isinstance(event, FinalText):
                message = protocol.event_message(self.session_id, event)
                stopped_at = self._stopped_at.pop(event.utterance_id, None)
                if stopped_at is not None:
                    message["latency_ms"] = round((time.monotonic() - stopped_at) * 1000)
                self._send(message)
            elif isinstance(event, UtteranceStopped):
                self._stopped_at[event.utterance_id] = time.monotonic()
                self._send(protocol.event_message(self.session_id, event))
            elif isinstance(event, UtteranceStarted | PartialText | SessionError):
                self._send(protocol.event_message(self.session_id, event))

    def _progress_callback(self, request: TranscribeRequest) -> Callable[[Segment], None] | None:
        """For backends that stream partial text (remote gpt-4o deltas): each piece is shown
        as soon as it arrives. Called from a worker thread or the loop, so it hops to the loop."""
        if request.kind is not RequestKind.PARTIAL or not self.scheduler.streams_partials:
            return None
        loop = asyncio.get_running_loop()
        pieces: list[str] = []

        def on_loop(piece: str) -> None:
            session = self.session
            if session is None or self._closing:
                return
            pieces.append(piece)
            try:
                self._dispatch(session.receive_partial_progress(request, "".join(pieces)))
            except Exception:
                log.exception("session %s: internal error", self.session_id)
                self._close(CLOSE_INTERNAL_ERROR, "internal server error")

        return lambda segment: loop.call_soon_threadsafe(on_loop, segment.text)

    def _receive_answer(
        self, request: TranscribeRequest, done: asyncio.Future[Transcription]
    ) -> None:
        session = self.session
        if session is None or done.cancelled() or self._closing:
            return
        try:
            answer = done.result()
        except BackendError as exc:
            log.warning(
                "session %s: request %s failed: %s", self.session_id, request.request_id, exc
            )
            events = session.receive_transcription_failed(request, str(exc))
        else:
            events = session.receive_transcription(request, answer)
        try:
            self._dispatch(events)
        except Exception:
            log.exception("session %s: internal error", self.session_id)
            self._close(CLOSE_INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------------ writing

    def _send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._outbox.qsize() >= self.settings.max_pending_events:
            log.warning("session %s: client is not reading; disconnecting", self.session_id)
            self._close(CLOSE_POLICY, "client is not reading its events")
            return
        self._outbox.put_nowait(message)

    def _close(self, code: int, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._outbox.put_nowait(_CloseRequest(code, reason))

    async def _write_loop(self) -> None:
        timeout = self.settings.send_timeout_s
        while True:
            item = await self._outbox.get()
            if isinstance(item, _CloseRequest):
                break
            try:
                await asyncio.wait_for(self.websocket.send_text(json.dumps(item)), timeout)
            except asyncio.TimeoutError:
                log.warning("session %s: send timed out; disconnecting", self.session_id)
                item = _CloseRequest(CLOSE_POLICY, "client is not reading its events")
                break
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.websocket.close(item.code, reason=_close_reason(item.reason)), timeout
                )


def _close_reason(text: str) -> str:
    """Close reasons are limited to 123 bytes of UTF-8."""
    encoded = text.encode()[:123]
    return encoded.decode(errors="ignore")
