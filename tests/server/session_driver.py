"""Drives a sans-I/O Session with a scripted transcriber that answers requests in order."""

from __future__ import annotations

from collections import deque

from server.backends.fake import ScriptedTranscriber
from server.core.events import RequestCancelled
from server.core.options import SessionOptions
from server.core.session import Session
from server.core.transcription import RequestKind, TranscribeRequest
from vad.detectors import EnergyDetector


def energy_session(**options) -> Session:
    return Session("test", SessionOptions(**options), detector_factory=lambda _: EnergyDetector())


class Driver:
    """Feeds audio to a session and answers its requests in order, like one FIFO worker that
    runs right after each call. ``hold=True`` keeps requests in ``held`` for the test to answer."""

    def __init__(self, session: Session, transcriber: ScriptedTranscriber) -> None:
        self.session = session
        self.transcriber = transcriber
        self.events: list = []
        self.held: list[TranscribeRequest] = []
        self._queue: deque[TranscribeRequest] = deque()
        self._cancelled: set[int] = set()
        self._draining = False

    def answer(self, events, *, hold: bool = False) -> None:
        for event in events:
            self.events.append(event)
            if isinstance(event, TranscribeRequest):
                (self.held if hold else self._queue).append(event)
            elif isinstance(event, RequestCancelled):
                self._cancelled.add(event.request_id)
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                request = self._queue.popleft()
                if request.request_id not in self._cancelled:
                    self.reply(request)
        finally:
            self._draining = False

    def reply(self, request: TranscribeRequest) -> None:
        answer = self.transcriber.transcribe(
            request.audio, request.options, final=request.kind is RequestKind.FINAL
        )
        self.answer(self.session.receive_transcription(request, answer))

    def feed(self, pcm: bytes, chunk_bytes: int | None = None, *, hold: bool = False) -> None:
        step = chunk_bytes or len(pcm) or 1
        for offset in range(0, len(pcm), step):
            self.answer(self.session.receive_audio(pcm[offset : offset + step]), hold=hold)

    def close(self) -> None:
        self.answer(self.session.receive_end_of_stream())

    def of_type(self, kind):
        return [event for event in self.events if isinstance(event, kind)]
