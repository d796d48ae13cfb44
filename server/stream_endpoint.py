"""The websocket edge of a streaming session: ``ws://HOST:PORT/v1/stream``.

One connection runs two tasks. The reader feeds binary audio and JSON messages into the
sans-I/O ``Session`` and hands its requests to the scheduler; answers come back through future
callbacks on the event loop. The writer drains a bounded outbox to the socket, so a client that
stops reading fills only its own outbox and is disconnected with a reason, without slowing
anyone else. Peer mistakes become ``error`` events; the session goes on wherever it can.

Before any audio is read the connection is checked: credential (``Authorization: Bearer`` or
``?token=``), browser origin, and the session limits; a refusal is an ``error`` event and a
close (1008 policy for credentials and origins, 1013 try-again-later for capacity). While the
session runs, message size, audio rate, idle time and session length are enforced. ``drain``
(server shutdown) ends the stream as if the client had closed it: every open utterance gets
its final, then ``session.closed`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server import protocol
from server.auth import ANONYMOUS, Principal, bearer
from server.errors import BackendError, InvalidMessage, LimitExceeded, PeerError, Unauthorized
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
from server.limits import AudioRateLimit, check_message_size, check_session_length
from server.session import Session, default_detector
from server.transcription import RequestKind, Segment, TranscribeRequest, Transcription

if TYPE_CHECKING:
    from server.context import ServerContext

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
    def __init__(self, websocket: WebSocket, context: ServerContext) -> None:
        self.websocket = websocket
        self.context = context
        self.scheduler = context.scheduler
        self.settings = context.settings
        self.served_models = context.served_models
        self.metrics = context.metrics
        self.session_id = "sess_" + uuid.uuid4().hex[:16]
        self.session: Session | None = None
        self.principal: Principal = ANONYMOUS
        self.finished = asyncio.Event()
        self.log = logging.LoggerAdapter(log, {"session_id": self.session_id})
        self._outbox: asyncio.Queue[dict[str, Any] | _CloseRequest] = asyncio.Queue()
        self._stopped_at: dict[int, float] = {}
        self._started_at: dict[int, float] = {}  # wall time of speech.started, per utterance
        self._closing = False
        self._close_reason = "client_closed"
        self._opened_at = time.monotonic()
        self._audio_rate: AudioRateLimit | None = None

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        await self.websocket.accept()
        try:
            self.principal = self._authenticate()
            self._check_origin()
            if self.context.shutting_down.is_set():
                raise LimitExceeded(
                    "the server is shutting down", code="server_shutting_down", limit="shutdown"
                )
            self.session = self._create_session()
            self.context.sessions.admit(self.principal.key_id, self.principal.max_sessions)
        except PeerError as exc:
            close = CLOSE_TRY_AGAIN_LATER if isinstance(exc, LimitExceeded) else CLOSE_POLICY
            self.metrics.record_error(exc.code)
            await self._refuse(exc.code, exc.message, close)
            return
        self.context.connections.add(self)
        self.metrics.record_session_opened()
        self._audio_rate = AudioRateLimit(
            0.0 if self.principal.fast else self.context.limits.max_audio_speed,
            self.context.limits.audio_burst_s,
            time.monotonic(),
        )
        self.log.info("session %s opened (key %s)", self.session_id, self.principal.key_id)
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
            self.context.connections.discard(self)
            self.context.sessions.release(self.principal.key_id)
            self.metrics.record_session_closed()
            self.log.info("session %s ended", self.session_id)

    def drain(self, reason: str) -> None:
        """End the stream now as if the client had closed it; finals follow, then
        ``session.closed`` with ``reason``."""
        session = self.session
        if session is None or session.closing or self._closing:
            return
        self._close_reason = reason
        try:
            self._dispatch(session.receive_end_of_stream())
        except Exception:
            self.log.exception("session %s: internal error while draining", self.session_id)
            self._close(CLOSE_INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------------ setup

    def _authenticate(self) -> Principal:
        credential = bearer(self.websocket.headers.get("authorization")) or (
            self.websocket.query_params.get("token")
        )
        return self.context.authenticator.authenticate(credential, time.time())

    def _check_origin(self) -> None:
        allowed = self.settings.allowed_origins
        origin = self.websocket.headers.get("origin")
        if allowed and origin is not None and origin not in allowed and "*" not in allowed:
            raise Unauthorized(
                f"origin {origin!r} is not in allowed_origins", code="origin_not_allowed"
            )

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

    async def _refuse(self, code: str, message: str, close_code: int = CLOSE_POLICY) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.send_text(
                json.dumps(protocol.error(self.session_id, code, message))
            )
            await self.websocket.close(close_code, reason=_close_reason(message))

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        session = self.session
        assert session is not None
        limits = self.context.limits
        while True:
            try:
                message = await self._receive_within_limits(session)
            except (WebSocketDisconnect, RuntimeError):
                return
            except LimitExceeded as exc:
                self._end_for_limit(session, exc)
                if session.closing:
                    continue  # the finals of what was said are still coming
                return
            if message["type"] == "websocket.disconnect":
                if not session.closed:
                    self.log.info("session %s: client went away mid-stream", self.session_id)
                return
            if session.closing and self._close_reason != "client_closed":
                continue  # the server ended the stream (a limit, shutdown): input is moot
            try:
                if message.get("bytes") is not None:
                    data = message["bytes"]
                    check_message_size(len(data), limits)
                    assert self._audio_rate is not None
                    self._audio_rate.receive(
                        len(data), session.options.sample_rate, time.monotonic()
                    )
                    self._dispatch(session.receive_audio(data))
                    self.metrics.record_audio(len(data) / 2 / session.options.sample_rate)
                elif message.get("text") is not None:
                    check_message_size(len(message["text"]), limits)
                    self._receive_text(session, message["text"])
            except LimitExceeded as exc:
                if exc.code == "message_too_large":
                    self._send(protocol.error(self.session_id, exc.code, exc.message))
                else:
                    self._end_for_limit(session, exc)
            except PeerError as exc:
                self._send(protocol.error(self.session_id, exc.code, exc.message))
            except Exception:
                self.log.exception("session %s: internal error", self.session_id)
                self._send(
                    protocol.error(self.session_id, "internal_error", "internal server error")
                )
                self._close(CLOSE_INTERNAL_ERROR, "internal server error")
                return

    async def _receive_within_limits(self, session: Session) -> dict[str, Any]:
        """The next client message; ``LimitExceeded`` when the client stays silent past
        ``idle_timeout_s`` or the session passes ``max_session_s``."""
        if session.closing:
            return await self.websocket.receive()  # finals are on their way: no more limits
        limits = self.context.limits
        elapsed = time.monotonic() - self._opened_at
        check_session_length(elapsed, limits)
        waits = [limit for limit in (limits.idle_timeout_s,) if limit]
        if limits.max_session_s:
            waits.append(limits.max_session_s - elapsed)
        if not waits:
            return await self.websocket.receive()
        try:
            return await asyncio.wait_for(self.websocket.receive(), timeout=min(waits))
        except asyncio.TimeoutError:
            check_session_length(time.monotonic() - self._opened_at, limits)
            raise LimitExceeded(
                f"no message for idle_timeout_s ({limits.idle_timeout_s:g} s)",
                code="idle_timeout",
                limit="idle_timeout_s",
            ) from None

    def _end_for_limit(self, session: Session, exc: LimitExceeded) -> None:
        """A limit ends the stream: the error names it, and what was said still gets its
        finals before ``session.closed`` (audio-rate abuse is closed at once)."""
        self.log.info("session %s: %s", self.session_id, exc.message)
        self._send(protocol.error(self.session_id, exc.code, exc.message))
        if exc.code == "audio_rate_exceeded":
            self._close(CLOSE_POLICY, exc.message)
            return
        self._close_reason = exc.code
        if not session.closing:
            self._dispatch(session.receive_end_of_stream())

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
                self._send(protocol.session_closed(self.session_id, self._close_reason))
                self._close(CLOSE_NORMAL, "session closed")
            elif isinstance(event, FinalText):
                self._send_final(event)
            elif isinstance(event, UtteranceStopped):
                self._stopped_at[event.utterance_id] = time.monotonic()
                self._send(protocol.event_message(self.session_id, event))
            elif isinstance(event, UtteranceStarted):
                self._started_at[event.utterance_id] = time.monotonic()
                self._send(protocol.event_message(self.session_id, event))
            elif isinstance(event, PartialText):
                started_at = self._started_at.pop(event.utterance_id, None)
                first_s = time.monotonic() - started_at if started_at is not None else None
                self.metrics.record_partial(first_s, event.backend or "unknown")
                self._send(protocol.event_message(self.session_id, event))
            elif isinstance(event, SessionError):
                self.metrics.record_error(event.code)
                self._send(protocol.event_message(self.session_id, event))

    def _send_final(self, event: FinalText) -> None:
        message = protocol.event_message(self.session_id, event)
        stopped_at = self._stopped_at.pop(event.utterance_id, None)
        self._started_at.pop(event.utterance_id, None)
        latency_s = time.monotonic() - stopped_at if stopped_at is not None else None
        if latency_s is not None:
            message["latency_ms"] = round(latency_s * 1000)
        self.metrics.record_final(event.backend or "unknown", latency_s)
        if self.settings.log_transcripts:
            self.log.info(
                "session %s utterance %s final: %s", self.session_id, event.utterance_id, event.text
            )
        self._send(message)

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
                self._dispatch(session.receive_partial_progress(request, "".join(pieces), "remote"))
            except Exception:
                self.log.exception("session %s: internal error", self.session_id)
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
            self.log.warning(
                "session %s: request %s failed: %s", self.session_id, request.request_id, exc
            )
            events = session.receive_transcription_failed(request, str(exc))
        else:
            events = session.receive_transcription(request, answer)
        try:
            self._dispatch(events)
        except Exception:
            self.log.exception("session %s: internal error", self.session_id)
            self._close(CLOSE_INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------------ writing

    def _send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._outbox.qsize() >= self.settings.max_pending_events:
            self.log.warning("session %s: client is not reading; disconnecting", self.session_id)
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
                self.log.warning("session %s: send timed out; disconnecting", self.session_id)
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
