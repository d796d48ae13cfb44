"""A streaming session as the server runs it: the sans-I/O ``Session``, the requests it has in
the scheduler, and the websocket it is attached to, if any.

Life of a session:

    state      on                                      then
    ---------  --------------------------------------  ---------------------------------------
    attached   the client closes and every final and   ended
               session.closed are written
    attached   the socket drops first (network, crash)  detached, if resumable; else ended
    attached   a policy close (not reading, rate        ended
               abuse), an internal error
    detached   a resume with the right token within     attached: missed finals replayed once
               ``resume_grace_s``
    detached   the grace period passes, or shutdown     ended
    any        ``drain`` (server shutdown)              finals flushed, session.closed, ended

While detached the session keeps transcribing what it already has; finals go to its final log
(the last ``FINAL_LOG_SIZE``), from which a resume replays those the client has not seen.
Binary audio messages are numbered 1, 2, 3... in order across the whole session; every second
of audio (and at each commit and close) the server acknowledges the count it has processed
with ``input_audio.ack``, so a resuming client knows what to send again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server import protocol
from server.auth import Principal
from server.errors import BackendError, InvalidMessage, LimitExceeded, PeerError
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
from server.limits import (
    AudioRateLimit,
    check_message_size,
    check_session_length,
    session_too_long,
)
from server.load import LoadLevel, LoadReport
from server.session import Session
from server.transcription import RequestKind, Segment, TranscribeRequest, Transcription
from server.ws_link import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    WebsocketLink,
)

if TYPE_CHECKING:
    from server.context import ServerContext

log = logging.getLogger("streamscribe.stream")

FINAL_LOG_SIZE = 1000
MAX_WATCHERS = 200
# Close codes a client sends on purpose (closing the tab, quitting): the session ends with
# them. Anything else (1006: the connection just died) leaves the session resumable.
CLIENT_ENDED = frozenset({CLOSE_NORMAL, CLOSE_GOING_AWAY})
ACK_EVERY_S = 1.0


class LiveSession:
    def __init__(self, context: ServerContext, session: Session, principal: Principal) -> None:
        self.context = context
        self.session = session
        self.session_id = session.session_id
        self.principal = principal
        self.resume_token = secrets.token_urlsafe(24)
        self.watch_token = secrets.token_urlsafe(16)
        self._watchers: set[WebsocketLink] = set()
        self.scheduler = context.scheduler
        self.settings = context.settings
        self.metrics = context.metrics
        self.finished = asyncio.Event()
        self.log = logging.LoggerAdapter(log, {"session_id": self.session_id})
        self.audio_seq = 0  # binary messages processed
        self._unacked_s = 0.0
        self._final_log: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._link: WebsocketLink | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ended = False
        self._policy_closed = False
        self._client_ended = False
        self._close_reason = "client_closed"
        self._closed_message: dict[str, Any] | None = None
        self._stopped_at: dict[int, float] = {}
        self._started_at: dict[int, float] = {}  # wall time of speech.started, per utterance
        self._opened_at = time.monotonic()
        self._audio_rate = AudioRateLimit(
            0.0 if principal.fast else context.limits.max_audio_speed,
            context.limits.audio_burst_s,
            time.monotonic(),
        )
        # Born into the server's current load; ``attach`` tells the client if it is not normal.
        self._load_level = context.load_report.level
        session.receive_load(self._load_level)
        context.live_sessions[self.session_id] = self
        self.metrics.record_session_opened()
        self.log.info("session %s opened (key %s)", self.session_id, principal.key_id)

    @property
    def detached(self) -> bool:
        return self._link is None and not self._ended

    # ------------------------------------------------------------------ attachments

    async def attach(self, websocket: WebSocket, *, last_final_id: int | None = None) -> None:
        """Serve ``websocket`` until it closes. ``last_final_id`` marks a resume: the client has
        every final up to that utterance, and gets the later ones from the log, once."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._link is not None:
            # A resume while the old socket still looks alive (the server has not noticed the
            # drop yet): the token proved who it is, so the new socket takes over.
            self._link.close(CLOSE_GOING_AWAY, "resumed on another connection")
            if self._reader is not None:
                self._reader.cancel()
        link = WebsocketLink(
            websocket,
            max_pending=self.settings.max_pending_events,
            send_timeout_s=self.settings.send_timeout_s,
            log=self.log,
        )
        self._link = link
        if last_final_id is None:
            link.send(
                protocol.session_created(
                    self.session_id,
                    self.session.options,
                    self.context.served_models[0],
                    resume_token=self.resume_token,
                    watch_token=self.watch_token,
                )
            )
        else:
            self._replay(link, last_final_id)
        if self._load_level is not LoadLevel.NORMAL:
            link.send(protocol.load_notice(self.session_id, self.context.load_report))
        reader = asyncio.create_task(self._read_loop(link), name=f"{self.session_id}-reader")
        self._reader = reader
        writer = asyncio.create_task(link.run_writer(), name=f"{self.session_id}-writer")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            if self._link is link:
                self._link = None
                self._after_link(link)

    def _after_link(self, link: WebsocketLink) -> None:
        """The socket is gone: end the session, or keep it for a resume."""
        closed_sent = "session.closed" in link.sent_types
        server_closed = link.close_code in (CLOSE_POLICY, CLOSE_INTERNAL_ERROR)
        resumable = self.settings.resume_grace_s > 0 and not (
            self._policy_closed or server_closed or self._client_ended
        )
        if closed_sent or not resumable or self.context.shutting_down.is_set():
            self._end()
            return
        self.log.info(
            "session %s: connection lost; resumable for %.0f s",
            self.session_id,
            self.settings.resume_grace_s,
        )
        self._expiry = asyncio.create_task(self._expire(self.settings.resume_grace_s))

    async def _expire(self, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        if self.detached:
            self.log.info("session %s: not resumed within %.0f s", self.session_id, grace_s)
            self._end()

    def _replay(self, link: WebsocketLink, last_final_id: int) -> None:
        missed = [
            message
            for utterance_id, message in self._final_log.items()
            if utterance_id > last_final_id
        ]
        link.send(protocol.session_resumed(self.session_id, self.audio_seq, len(missed)))
        for message in missed:
            link.send(message)
        if self._closed_message is not None:  # it drained while the client was away
            link.send(self._closed_message)
            link.close(CLOSE_NORMAL, "session closed")

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._expiry is not None:
            self._expiry.cancel()
        self.scheduler.cancel_session(self.session_id)
        for watcher in list(self._watchers):
            watcher.send(self._closed_message or protocol.session_closed(self.session_id, "ended"))
            watcher.close(CLOSE_NORMAL, "session ended")
        self.context.live_sessions.pop(self.session_id, None)
        self.context.sessions.release(self.principal.key_id)
        self.metrics.record_session_closed()
        self.finished.set()
        self.log.info("session %s ended", self.session_id)

    async def watch(self, websocket: WebSocket) -> None:
        """Serve a read-only viewer: every final so far, then partials and finals as they come,
        until the session ends or the viewer leaves."""
        if len(self._watchers) >= MAX_WATCHERS:
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
        finals = [m for m in self._final_log.values() if m["type"] == "transcript.final"]
        link.send(protocol.watch_started(self.session_id, len(finals)))
        for message in finals:
            link.send(message)
        self._watchers.add(link)
        writer = asyncio.create_task(link.run_writer())
        reader = asyncio.create_task(_read_until_closed(websocket))
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._watchers.discard(link)
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

    def receive_load(self, report: LoadReport) -> None:
        """The server's load level changed: pace partials to it and tell the client, so that
        slower or missing partials are explained rather than silent."""
        if report.level is self._load_level:
            return
        self._load_level = report.level
        self._safely(lambda: self._dispatch(self.session.receive_load(report.level)))
        self._send(protocol.load_notice(self.session_id, report))

    def _broadcast(self, message: dict[str, Any]) -> None:
        for watcher in list(self._watchers):
            watcher.send(message)

    def drain(self, reason: str) -> None:
        """Server shutdown: end the stream as if the client had closed it; finals follow, then
        ``session.closed`` with ``reason``. A detached session just ends."""
        if self.detached:
            self._end()
            return
        if self.session.closing or self._ended:
            return
        self._close_reason = reason
        self._safely(lambda: self._dispatch(self.session.receive_end_of_stream()))

    # ------------------------------------------------------------------ reading

    async def _read_loop(self, link: WebsocketLink) -> None:
        session = self.session
        limits = self.context.limits
        while True:
            try:
                message = await self._receive_within_limits(link.websocket)
            except (WebSocketDisconnect, RuntimeError):
                return
            except LimitExceeded as exc:
                self._end_for_limit(exc)
                if session.closing:
                    continue  # the finals of what was said are still coming
                return
            if message["type"] == "websocket.disconnect":
                if message.get("code") in CLIENT_ENDED:
                    self._client_ended = True  # a deliberate close: nothing to resume
                elif not session.closed:
                    self.log.info("session %s: connection lost mid-stream", self.session_id)
                return
            if session.closing and self._close_reason != "client_closed":
                continue  # the server ended the stream (a limit, shutdown): input is moot
            try:
                if message.get("bytes") is not None:
                    self._receive_audio(message["bytes"])
                elif message.get("text") is not None:
                    check_message_size(len(message["text"]), limits)
                    self._receive_text(message["text"])
            except LimitExceeded as exc:
                if exc.code == "message_too_large":
                    self._send(protocol.error(self.session_id, exc.code, exc.message))
                else:
                    self._end_for_limit(exc)
            except PeerError as exc:
                self._send(protocol.error(self.session_id, exc.code, exc.message))
            except Exception:
                self.log.exception("session %s: internal error", self.session_id)
                self._send(
                    protocol.error(self.session_id, "internal_error", "internal server error")
                )
                self._close(CLOSE_INTERNAL_ERROR, "internal server error")
                return

    def _receive_audio(self, data: bytes) -> None:
        check_message_size(len(data), self.context.limits)
        rate = self.session.options.sample_rate
        self._audio_rate.receive(len(data), rate, time.monotonic())
        self.audio_seq += 1  # numbered even when refused: the client counts what it sent
        self._dispatch(self.session.receive_audio(data))
        seconds = len(data) / 2 / rate
        self.metrics.record_audio(seconds)
        self._unacked_s += seconds
        if self._unacked_s >= ACK_EVERY_S:
            self._ack()

    def _ack(self) -> None:
        self._unacked_s = 0.0
        self._send(protocol.audio_ack(self.session_id, self.audio_seq))

    async def _receive_within_limits(self, websocket: WebSocket) -> dict[str, Any]:
        """The next client message; ``LimitExceeded`` when the client stays silent past
        ``idle_timeout_s`` or the session passes ``max_session_s``."""
        if self.session.closing:
            return await websocket.receive()  # finals are on their way: no more limits
        limits = self.context.limits
        elapsed = time.monotonic() - self._opened_at
        check_session_length(elapsed, limits)
        idle_s = limits.idle_timeout_s or math.inf
        remaining_s = limits.max_session_s - elapsed if limits.max_session_s else math.inf
        if math.isinf(idle_s) and math.isinf(remaining_s):
            return await websocket.receive()
        try:
            return await asyncio.wait_for(websocket.receive(), timeout=min(idle_s, remaining_s))
        except asyncio.TimeoutError:
            if remaining_s <= idle_s:
                raise session_too_long(limits) from None
            raise LimitExceeded(
                f"no message for idle_timeout_s ({limits.idle_timeout_s:g} s)",
                code="idle_timeout",
                limit="idle_timeout_s",
            ) from None

    def _end_for_limit(self, exc: LimitExceeded) -> None:
        """A limit ends the stream: the error names it, and what was said still gets its
        finals before ``session.closed`` (audio-rate abuse is closed at once)."""
        self.log.info("session %s: %s", self.session_id, exc.message)
        self._send(protocol.error(self.session_id, exc.code, exc.message))
        if exc.code == "audio_rate_exceeded":
            self._close(CLOSE_POLICY, exc.message)
            return
        self._close_reason = exc.code
        if not self.session.closing:
            self._dispatch(self.session.receive_end_of_stream())

    def _receive_text(self, text: str) -> None:
        session = self.session
        message = protocol.parse_client_message(text)
        if isinstance(message, protocol.SessionUpdate):
            check_session_choices(self.context, message.changes)
            self._dispatch(session.receive_update(message.changes))
            self._send(protocol.session_updated(self.session_id, session.options))
        elif isinstance(message, protocol.Commit):
            self._ack()
            self._dispatch(session.receive_commit())
        elif isinstance(message, protocol.Retry):
            self._dispatch(session.receive_retry(message.utterance_id))
        else:
            self._ack()
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
                self.scheduler.cancel(self.session_id, event.request_id)
            elif isinstance(event, SessionDrained):
                self._closed_message = protocol.session_closed(self.session_id, self._close_reason)
                self._broadcast(self._closed_message)
                self._send(self._closed_message)
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
                message = protocol.event_message(self.session_id, event)
                self._broadcast(message)
                self._send(message)
            elif isinstance(event, SessionError):
                self.metrics.record_error(event.code)
                message = protocol.event_message(self.session_id, event)
                if event.utterance_id is not None:
                    self._log_final(event.utterance_id, message)
                self._send(message)

    def _send_final(self, event: FinalText) -> None:
        message = protocol.event_message(self.session_id, event)
        stopped_at = self._stopped_at.pop(event.utterance_id, None)
        self._started_at.pop(event.utterance_id, None)
        latency_s = time.monotonic() - stopped_at if stopped_at is not None else None
        if latency_s is not None:
            message["latency_ms"] = round(latency_s * 1000)
        self.metrics.record_final(event.backend or "unknown", latency_s)
        if latency_s is not None:
            self.context.load.receive_final_latency(latency_s, time.monotonic())
        if self.settings.log_transcripts:
            self.log.info(
                "session %s utterance %s final: %s", self.session_id, event.utterance_id, event.text
            )
        self._log_final(event.utterance_id, message)
        self._broadcast(message)
        self._send(message)

    def _log_final(self, utterance_id: int, message: dict[str, Any]) -> None:
        self._final_log[utterance_id] = message
        self._final_log.move_to_end(utterance_id)
        while len(self._final_log) > FINAL_LOG_SIZE:
            self._final_log.popitem(last=False)

    def _progress_callback(self, request: TranscribeRequest) -> Callable[[Segment], None] | None:
        """For backends that stream partial text (remote gpt-4o deltas): each piece is shown
        as soon as it arrives. Called from a worker thread or the loop, so it hops to the loop."""
        if request.kind is not RequestKind.PARTIAL or not self.scheduler.streams_partials:
            return None
        loop = asyncio.get_running_loop()
        pieces: list[str] = []

        def on_loop(piece: str) -> None:
            if self._ended:
                return
            pieces.append(piece)
            text = "".join(pieces)
            self._safely(
                lambda: self._dispatch(
                    self.session.receive_partial_progress(request, text, "remote")
                )
            )

        return lambda segment: loop.call_soon_threadsafe(on_loop, segment.text)

    def _receive_answer(
        self, request: TranscribeRequest, done: asyncio.Future[Transcription]
    ) -> None:
        if self._ended or done.cancelled():
            return
        try:
            answer = done.result()
        except BackendError as exc:
            self.log.warning(
                "session %s: request %s failed: %s", self.session_id, request.request_id, exc
            )
            events = self.session.receive_transcription_failed(request, str(exc))
        else:
            events = self.session.receive_transcription(request, answer)
        self._safely(lambda: self._dispatch(events))

    def _safely(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            self.log.exception("session %s: internal error", self.session_id)
            self._close(CLOSE_INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------------ writing

    def _send(self, message: dict[str, Any]) -> None:
        """To the attached client; while detached only the final log keeps anything."""
        link = self._link
        if link is None:
            return  # detached: finals wait in the final log for a resume
        link.send(message)
        if link.closing and link.close_code == CLOSE_POLICY:
            self._policy_closed = True

    def _close(self, code: int, reason: str) -> None:
        if code != CLOSE_NORMAL:
            self._policy_closed = True  # not resumable: the server chose to end it
        if self._link is not None:
            self._link.close(code, reason)
        elif code != CLOSE_NORMAL:
            self._end()


def check_session_choices(context: ServerContext, changes: dict[str, Any]) -> None:
    """Options that depend on this server: the model and the partial backend."""
    model = changes.get("model")
    if model is not None and model not in context.served_models:
        raise InvalidMessage(
            f"model {model!r} is not served here; available: {', '.join(context.served_models)}",
            code="model_not_found",
        )
    choice = changes.get("partial_backend")
    available = context.scheduler.partial_backends
    if choice not in (None, "auto") and choice not in available:
        raise InvalidMessage(
            f"partial_backend {choice!r} is not available here; this server has: "
            f"{', '.join(available)}",
            code="invalid_session",
        )


async def _read_until_closed(websocket: WebSocket) -> None:
    """A viewer sends nothing that matters; reading notices when it leaves."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
