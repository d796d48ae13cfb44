"""A streaming session as the server runs it: the sans-I/O ``Session``, the requests it has in
the scheduler, and the websocket it is attached to, if any.

Life of a session (``LIVE_TRANSITIONS`` below is this table as data):

    state     event    next      when
    --------  -------  --------  ------------------------------------------------------------
    NEW       ATTACH   ATTACHED  the first socket is served
    ATTACHED  ATTACH   ATTACHED  a resume while the old socket still looks alive: it takes over
    ATTACHED  DETACH   DETACHED  the socket dropped (network, crash) and the session may resume
    DETACHED  ATTACH   ATTACHED  a resume with the right token within ``resume_grace_s``:
                                 missed finals replayed once
    NEW       END      ENDED     (a drain before the first socket is served)
    ATTACHED  END      ENDED     the client closed and every final and session.closed are
                                 written; a policy close (not reading, rate abuse); an internal
                                 error; the socket dropped and the session may not resume
    DETACHED  END      ENDED     the grace period passed, or the server shuts down
    ENDED     END      ENDED     ending twice (a drain racing the last final) changes nothing

``drain`` (server shutdown) ends the stream as if the client had closed it: finals are flushed,
then session.closed, then END.

While detached the session keeps transcribing what it already has; finals go to its final log
(the last ``FINAL_LOG_SIZE``), from which a resume replays those the client has not seen.
Binary audio messages are numbered 1, 2, 3... in order across the whole session; every second
of audio (and at each commit and close) the server acknowledges the count it has processed
with ``input_audio.ack``, so a resuming client knows what to send again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from server.core import protocol
from server.core.errors import BackendError
from server.core.events import (
    Event,
    FinalText,
    PartialText,
    RequestCancelled,
    SessionDrained,
    SessionError,
    UtteranceCleared,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.load_report import LoadLevel, LoadReport
from server.core.protocol import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY
from server.core.received_audio import ReceivedAudio
from server.core.session import Session
from server.core.state_machine import StateMachine, TransitionTable
from server.core.transcription import RequestKind, Segment, TranscribeRequest, Transcription
from server.core.wire import StreamWire, Wire
from server.policy.auth import Principal
from server.policy.limits import AudioRateLimit
from server.policy.resume_log import FinalLog
from server.runtime.context import ServerContext
from server.web.client_reader import ClientReader
from server.web.latency import UtteranceClock
from server.web.progress import growing_text
from server.web.registry import LiveSessions
from server.web.rooms import RoomRegistry, RoomSeat
from server.web.watchers import Watchers
from server.web.ws_link import WebsocketLink

log = logging.getLogger("streamscribe.stream")


class LiveState(enum.Enum):
    NEW = "new"
    ATTACHED = "attached"
    DETACHED = "detached"
    ENDED = "ended"


class LiveEvent(enum.Enum):
    ATTACH = "attach"
    DETACH = "detach"
    END = "end"


S, E = LiveState, LiveEvent
LIVE_TRANSITIONS: TransitionTable[LiveState, LiveEvent] = {
    (S.NEW, E.ATTACH): S.ATTACHED,
    (S.ATTACHED, E.ATTACH): S.ATTACHED,
    (S.ATTACHED, E.DETACH): S.DETACHED,
    (S.DETACHED, E.ATTACH): S.ATTACHED,
    (S.NEW, E.END): S.ENDED,
    (S.ATTACHED, E.END): S.ENDED,
    (S.DETACHED, E.END): S.ENDED,
    (S.ENDED, E.END): S.ENDED,
}
del S, E

LiveSessionRegistry = LiveSessions["LiveSession"]


class LiveSession:
    reader_type: type[ClientReader] = ClientReader  # an adapter's session reads its own events

    def __init__(
        self,
        context: ServerContext,
        registry: LiveSessionRegistry,
        session: Session,
        principal: Principal,
        wire: Wire | None = None,
    ) -> None:
        self.context = context
        # What the client is told, in its protocol (ours unless an adapter says otherwise).
        self.wire: Wire = wire or StreamWire(session.session_id, context.served_models[0])
        self.registry = registry
        self.session = session
        self.session_id = session.session_id
        self.principal = principal
        self.resume_token = secrets.token_urlsafe(24)
        self.watch_token = secrets.token_urlsafe(16)
        self.scheduler = context.scheduler
        self.settings = context.streaming
        self.metrics = context.metrics
        self.finished = asyncio.Event()
        self.log = logging.LoggerAdapter(log, {"session_id": self.session_id})
        self.machine = StateMachine(LIVE_TRANSITIONS, LiveState.NEW, name=self.session_id)
        self.watchers = Watchers(self.settings, self.log)
        self.rooms: RoomRegistry | None = None  # where this session may join a room
        self.seat: RoomSeat | None = None
        self.final_log = FinalLog()
        self.received = ReceivedAudio()  # binary messages numbered, and which are final-safe
        self.unacked_s = 0.0  # audio seconds since the last input_audio.ack
        self.audio_rate = AudioRateLimit(
            0.0 if principal.fast else context.limits.max_audio_speed,
            context.limits.audio_burst_s,
            time.monotonic(),
        )
        self._link: WebsocketLink | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        # False once the server or the client closed on purpose, or the protocol cannot resume.
        self.resumable = self.wire.resumable
        self.close_reason = "client_closed"
        self._closed_message: dict[str, Any] | None = None
        self.clock = UtteranceClock()
        self.opened_at = time.monotonic()
        # Born into the server's current load; ``attach`` tells the client if it is not normal.
        self._load_level = context.load_report.level
        session.receive_load(self._load_level)
        registry.add(self)
        self.metrics.record_session_opened()
        self.log.info("session %s opened (key %s)", self.session_id, principal.key_id)

    @property
    def state(self) -> LiveState:
        return self.machine.state

    @property
    def detached(self) -> bool:
        return self.state in (LiveState.NEW, LiveState.DETACHED)

    @property
    def ended(self) -> bool:
        return self.state is LiveState.ENDED

    # ------------------------------------------------------------------ attachments

    async def attach(self, websocket: WebSocket, *, last_final_id: int | None = None) -> None:
        """Serve ``websocket`` until it closes. ``last_final_id`` marks a resume: the client has
        every final up to that utterance, and gets the later ones from the log, once."""
        self.machine.fire(LiveEvent.ATTACH)
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
            opened = self.wire.opened(
                self.session.options, resume_token=self.resume_token, watch_token=self.watch_token
            )
            for message in opened:
                link.send(message)
        else:
            self._replay(link, last_final_id)
        if self._load_level is not LoadLevel.NORMAL:
            for message in self.wire.load_notice(self.context.load_report):
                link.send(message)
        await self._serve(link)

    async def _serve(self, link: WebsocketLink) -> None:
        reading = self.reader_type(self, link.websocket).run()
        reader = asyncio.create_task(reading, name=f"{self.session_id}-reader")
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
        resumable = self.settings.resume_grace_s > 0 and self.resumable and not server_closed
        if closed_sent or not resumable or self.context.shutting_down.is_set():
            self._end()
            return
        self.machine.fire(LiveEvent.DETACH)
        self.log.info(
            "session %s: connection lost; resumable for %.0f s",
            self.session_id,
            self.settings.resume_grace_s,
        )
        self._expiry = asyncio.create_task(self._expire(self.settings.resume_grace_s))

    async def _expire(self, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        if self.state is LiveState.DETACHED:
            self.log.info("session %s: not resumed within %.0f s", self.session_id, grace_s)
            self._end()

    def _replay(self, link: WebsocketLink, last_final_id: int) -> None:
        missed = self.final_log.after(last_final_id)
        link.send(protocol.session_resumed(self.session_id, self.received.count, len(missed)))
        for message in missed:
            link.send(message)
        if self._closed_message is not None:  # it drained while the client was away
            link.send(self._closed_message)
            link.close(CLOSE_NORMAL, "session closed")

    def _end(self) -> None:
        if self.ended:
            return
        self.machine.fire(LiveEvent.END)
        if self._expiry is not None:
            self._expiry.cancel()
        self.scheduler.cancel_session(self.session_id)
        self.context.load.forget_session(self.session_id)
        self.watchers.close_all(self._closed_message or self._closed("ended"))
        self.registry.remove(self.session_id)
        self.context.sessions.release(self.principal.key_id)
        self.metrics.record_session_closed()
        self.finished.set()
        self.log.info("session %s ended", self.session_id)

    def receive_load(self, report: LoadReport) -> None:
        """The server's load level changed: pace partials to it and tell the client, so that
        slower or missing partials are explained rather than silent."""
        if report.level is self._load_level:
            return
        self._load_level = report.level
        self._safely(lambda: self.dispatch(self.session.receive_load(report.level)))
        self.send_all(self.wire.load_notice(report))

    def drain(self, reason: str) -> None:
        """Server shutdown: end the stream as if the client had closed it; finals follow, then
        ``session.closed`` with ``reason``. A detached session just ends."""
        if self.detached:
            self._end()
            return
        if self.session.closing or self.ended:
            return
        self.close_reason = reason
        self._safely(lambda: self.dispatch(self.session.receive_end_of_stream()))

    # ------------------------------------------------------------------ core events

    def dispatch(self, events: list[Event]) -> None:
        """Carry out what the core asked for: requests to the scheduler, events to the client
        (and to viewers, and the final log)."""
        for event in events:
            if isinstance(event, TranscribeRequest):
                self._submit(event)
            elif isinstance(event, RequestCancelled):
                self.scheduler.cancel(self.session_id, event.request_id)
            elif isinstance(event, SessionDrained):
                self._closed_message = self._closed(self.close_reason)
                self.watchers.broadcast(self._closed_message)
                self.send_all(self.wire.closed(self._closed_message))
                self.close(self.wire.close_code(self.close_reason), "session closed")
            elif isinstance(event, FinalText):
                self._send_final(event)
            elif isinstance(event, UtteranceStarted | UtteranceStopped):
                self.clock.receive(event)
                message = protocol.event_message(self.session_id, event)
                self.send_all(self.wire.event(event, message))
            elif isinstance(event, UtteranceCleared):
                self.clock.forget(event.utterance_id)
                self.send_all(self.wire.event(event, None))
            elif isinstance(event, PartialText):
                self._send_partial(event)
            elif isinstance(event, SessionError):
                self.clock.forget(event.utterance_id or 0)
                self.metrics.record_error(event.code)
                message = protocol.event_message(self.session_id, event)
                if event.utterance_id is not None:
                    self.final_log.record(event.utterance_id, message)
                self.send_all(self.wire.event(event, message))

    def _submit(self, request: TranscribeRequest) -> None:
        future = self.scheduler.submit(request, on_segment=self._progress_callback(request))
        future.add_done_callback(lambda done: self._receive_answer(request, done))

    def _send_partial(self, event: PartialText) -> None:
        first_s = self.clock.first_partial_s(event.utterance_id)
        self.metrics.record_partial(first_s, event.backend or "unknown")
        message = protocol.event_message(self.session_id, event)
        self.watchers.broadcast(message)
        self.send_all(self.wire.event(event, message))

    def _send_final(self, event: FinalText) -> None:
        message = protocol.event_message(self.session_id, event)
        latency_s = self.clock.final_s(event.utterance_id, retried=event.retried)
        if latency_s is not None:  # (a retried final's wait must not steer the load level)
            message["latency_ms"] = round(latency_s * 1000)
            self.context.load.receive_final_latency(latency_s, time.monotonic(), self.session_id)
        self.metrics.record_final(event.backend or "unknown", latency_s)
        self.final_log.record(event.utterance_id, message)
        self.watchers.broadcast(message)
        self.send_all(self.wire.event(event, message))

    def _progress_callback(self, request: TranscribeRequest) -> Callable[[Segment], None] | None:
        """For backends that stream partial text (remote gpt-4o deltas): each piece is shown
        as soon as it arrives."""
        if request.kind is not RequestKind.PARTIAL or not self.scheduler.streams_partials:
            return None

        def show(text: str) -> None:
            def step() -> None:
                self.dispatch(self.session.receive_partial_progress(request, text, "remote"))

            if not self.ended:
                self._safely(step)

        return growing_text(asyncio.get_running_loop(), show)

    def _receive_answer(
        self, request: TranscribeRequest, done: asyncio.Future[Transcription]
    ) -> None:
        if self.ended or done.cancelled():
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
        self._safely(lambda: self.dispatch(events))

    def _safely(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            self.log.exception("session %s: internal error", self.session_id)
            self.close(CLOSE_INTERNAL_ERROR, "internal server error")

    # ------------------------------------------------------------------ writing

    def _closed(self, reason: str) -> dict[str, Any]:
        return protocol.session_closed(self.session_id, reason, self.received.count)

    def send_all(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.send(message)

    def send(self, message: dict[str, Any]) -> None:
        """To the attached client; while detached only the final log keeps anything."""
        link = self._link
        if link is None:
            return  # detached: finals wait in the final log for a resume
        link.send(message)
        if link.closing and link.close_code == CLOSE_POLICY:
            self.resumable = False

    def close(self, code: int, reason: str) -> None:
        if code != CLOSE_NORMAL:
            self.resumable = False  # not resumable: the server chose to end it
        if self._link is not None:
            self._link.close(code, reason)
        elif code != CLOSE_NORMAL:
            self._end()
