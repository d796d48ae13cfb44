"""The sans-I/O streaming session: audio bytes and model answers in, events out.

The session never calls a model. It emits ``TranscribeRequest`` commands; the edge runs them and
feeds each answer back with ``receive_transcription`` (or ``receive_transcription_failed``).
Its clock is the count of 16 kHz samples received, so the same input gives the same events
however the audio is split into messages.

Its parts, one job each: ``audio_path`` (bytes -> frames -> segmenter events, and the buffer
requests are cut from), ``utterance`` (an utterance's state and its transition table),
``pacing`` (when a partial is due), ``outcomes`` (answers -> events, failed finals kept for a
retry). This module ties them together:

    event from the segmenter      effect
    ----------------------------  ----------------------------------------------------------------
    SpeechStarted(start)          new utterance; UtteranceStarted; partials while it is SPEAKING
    SpeechPaused(end)             speculative final request for [start, end): its answer is the
                                  final if the silence window closes, so finals are ready early;
                                  it is also a settled hypothesis for the stable words (as is
                                  the pause partial asked for a little sooner, see ``pacing``)
    SpeechResumed                 RequestCancelled for the speculative request
    SpeechEnded(end, reason)      UtteranceStopped; final request for [start, end) unless the
                                  speculative one covers exactly that
    final answer                  FinalText once the utterance has ended, in utterance order;
                                  exactly one per utterance, never revised
    final failed                  SessionError naming the utterance; its audio is kept (the last
                                  ``MAX_RETAINED_FAILURES``) until the client retries it
    receive_clear()               the utterance in progress is dropped: UtteranceCleared, its
                                  speculative final cancelled; nothing before it changes
    receive_retry(utterance)      a new final request for the kept audio; its answer is that
                                  utterance's FinalText (marked ``retried``), out of order

Final requests are issued in utterance order, each after the previous final is known, because
each one's prompt carries the previous finals' text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from server.core.errors import InvalidMessage, SessionClosing
from server.core.events import (
    Event,
    RequestCancelled,
    SessionDrained,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.load_report import LoadLevel
from server.core.options import AUDIO_FORMAT_OPTIONS, SessionOptions
from server.core.prompt import PromptCarry
from server.core.quality import QualityThresholds
from server.core.session.audio_path import AudioBuffer, AudioPath, lookback_samples
from server.core.session.finals import FinalsInOrder
from server.core.session.outcomes import (
    FailedFinals,
    apply_partial,
    failure_event,
    hear_speculative,
    progress_partial,
    retried_final,
)
from server.core.session.pacing import PartialPacer
from server.core.session.requests import RequestMaker
from server.core.session.utterance import (
    Utterance,
)
from server.core.transcription import (
    RequestKind,
    Samples,
    TranscribeRequest,
    Transcription,
)
from server.core.units import samples_to_ms
from vad.detectors import SpeechDetector, make_detector
from vad.errors import DetectorUnavailable
from vad.segmenter import SegmentEvent, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted

DetectorFactory = Callable[[SessionOptions], SpeechDetector]


def default_detector(options: SessionOptions) -> SpeechDetector:
    return make_detector(
        options.vad, aggressiveness=options.vad_aggressiveness, threshold=options.vad_threshold
    )


class Session:
    """One client's stream. Every ``receive_*`` method returns the events it caused, in order."""

    def __init__(
        self,
        session_id: str,
        options: SessionOptions | None = None,
        *,
        detector_factory: DetectorFactory = default_detector,
        thresholds: QualityThresholds | None = None,
        request_ids: itertools.count[int] | None = None,
    ) -> None:
        self.session_id = session_id
        self.options = options or SessionOptions()
        self.thresholds = thresholds or QualityThresholds()
        self._detector_factory = detector_factory
        self._utterance_ids = itertools.count(1)
        self._audio = AudioBuffer()
        self._failed = FailedFinals()
        self._current: Utterance | None = None  # SPEAKING or PAUSED
        self._last_end_samples = 0
        self._pacer = PartialPacer(self.options.partial_interval_ms)
        self._audio_started = False
        self.closing = False
        self.closed = False
        self.prompt = PromptCarry(self.options.prompt)
        self._requests = RequestMaker(
            session_id, self._audio, self.prompt, request_ids or itertools.count(1)
        )
        self._requests.options = self.options
        self._finals = FinalsInOrder(
            self.prompt, self.thresholds, self._failed, self._requests.final
        )
        self._path = AudioPath(self.options, self._detector(self.options))

    # ------------------------------------------------------------------ inputs

    def receive_audio(self, data: bytes) -> list[Event]:
        """PCM16 little-endian mono at the session's sample rate, any number of whole samples."""
        if self.closing:
            raise SessionClosing("audio after session.close is ignored")
        frames = self._path.frames(data)
        if data:
            self._audio_started = True
        return self._receive_frames(frames)

    def receive_update(self, changes: dict[str, Any]) -> list[Event]:
        """Apply a ``session.update``. Audio-format options are fixed once audio has arrived."""
        if self.closing:
            raise SessionClosing("session.update after session.close is ignored")
        frozen = sorted(key for key in changes if key in AUDIO_FORMAT_OPTIONS)
        new_options = self.options.updated(changes)
        if self._audio_started and any(
            getattr(new_options, key) != getattr(self.options, key) for key in frozen
        ):
            raise InvalidMessage(
                f"{', '.join(frozen)} cannot change after audio has started",
                code="invalid_session",
            )
        if new_options.language != self.options.language:
            self.prompt.reset()
        self.prompt.static_prompt = new_options.prompt.strip()
        self.options = self._requests.options = new_options
        self._pacer.interval_ms = new_options.partial_interval_ms
        if not self._audio_started:
            self._path = AudioPath(new_options, self._detector(new_options))
        else:
            self._path.segmenter.update_options(new_options.segmenter_options())
        return []

    def receive_commit(self) -> list[Event]:
        """``input_audio.commit``: end the current utterance now. Without speech it does nothing."""
        if self.closing:
            raise SessionClosing("input_audio.commit after session.close is ignored")
        return self._handle_segments(self._path.force_end("commit"))

    def receive_end_of_stream(self) -> list[Event]:
        """The client closed its stream: flush, end the last utterance, close once drained."""
        if self.closing:
            return []
        events = self._receive_frames(self._path.flush())
        events += self._handle_segments(self._path.force_end("end_of_stream"))
        self.closing = True
        return events + self._finish_if_drained()

    def receive_clear(self) -> list[Event]:
        """OpenAI's ``input_audio_buffer.clear``: the utterance in progress gets no final."""
        if self.closing:
            raise SessionClosing("a clear after session.close is ignored")
        self._path.segmenter.clear()
        self._last_end_samples = self.position_samples
        utterance, self._current = self._current, None
        return self._finals.clear(utterance) if utterance is not None else []

    def receive_transcription(
        self, request: TranscribeRequest, answer: Transcription
    ) -> list[Event]:
        """The model's answer to one of this session's requests."""
        failed = self._failed.retrying(request)
        if failed is not None and not self.closed:
            self._failed.forget(request.utterance_id)
            final = retried_final(failed, answer, self.thresholds, self.options.language)
            return [final, *self._finish_if_drained()]
        utterance = self._finals.get(request.utterance_id)
        if utterance is None or self.closed:
            return []
        if request.kind is RequestKind.PARTIAL:
            return self._apply_partial(utterance, request, answer)
        if utterance.final_request is not request:
            return []  # a speculative final that speech made obsolete
        utterance.receive_answer(answer)
        return hear_speculative(utterance, answer, self.thresholds) + self._emit_ready_finals()

    def receive_transcription_failed(self, request: TranscribeRequest, message: str) -> list[Event]:
        """The model could not answer. A failed partial is skipped; a failed final is reported."""
        failed = self._failed.retrying(request)
        if failed is not None and not self.closed:
            failed.retry_request = None
            return [failure_event(failed.utterance_id, message), *self._finish_if_drained()]
        utterance = self._finals.get(request.utterance_id)
        if (
            utterance is None
            or request.kind is RequestKind.PARTIAL
            or utterance.final_request is not request
        ):
            return []
        utterance.receive_failure(message)
        return self._emit_ready_finals()

    def receive_partial_progress(
        self, request: TranscribeRequest, text: str, backend: str = ""
    ) -> list[Event]:
        """Text a streaming backend has decoded so far for a partial request: shown at once
        when it says more than the partial on screen (see ``outcomes.progress_partial``)."""
        utterance = self._finals.get(request.utterance_id)
        if utterance is None or self.closed or request.kind is not RequestKind.PARTIAL:
            return []
        return progress_partial(utterance, request, text, backend)

    def receive_load(self, level: LoadLevel) -> list[Event]:
        """The server's load changed: partials come at twice the interval while it is
        ``PARTIALS_SLOWED`` and not at all while ``PARTIALS_PAUSED``; finals are unaffected."""
        self._pacer.load = level
        return []

    def receive_retry(self, utterance_id: int) -> list[Event]:
        """``utterance.retry``: transcribe a failed utterance's kept audio again."""
        if self.closing:
            raise SessionClosing("utterance.retry after session.close is ignored")
        request = self._failed.retry(utterance_id, self._requests.retry)
        return [request] if request is not None else []  # None: already on its way

    # ------------------------------------------------------------------ state

    @property
    def position_samples(self) -> int:
        return self._path.position_samples

    @property
    def speaking(self) -> bool:  # an utterance has started and not ended
        return self._current is not None

    @property
    def pending_utterances(self) -> int:
        return len(self._finals)

    @property
    def final_safe_samples(self) -> int:
        """Stream position before which every final is sent: the start of the oldest utterance
        still without its final, or, with none, the earliest point a coming utterance could
        start at (its pre-roll). Failed finals do not hold it back: their error was sent."""
        if self.closed:
            return self.position_samples
        pending = self._finals.oldest_start_samples()
        return pending if pending is not None else self._earliest_needed_samples()

    @property
    def buffered_samples(self) -> int:
        """Samples held for requests still to come; bounded however long the stream runs."""
        return self._audio.length

    # ------------------------------------------------------------------ audio and speech

    def _detector(self, options: SessionOptions) -> SpeechDetector:
        try:
            return self._detector_factory(options)
        except DetectorUnavailable as exc:
            raise InvalidMessage(
                f"vad {options.vad!r} is not available on this server ({exc}); choose another vad",
                code="invalid_session",
            ) from exc

    def _receive_frames(self, frames: list[Samples]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            self._audio.append(frame)
            events += self._handle_segments(self._path.receive_frame(frame))
            events += self._maybe_request_partial()
            self._audio.trim_before(self._earliest_needed_samples())
        return events

    def _earliest_needed_samples(self) -> int:
        # While speaking, everything from the utterance start; otherwise the pre-roll.
        if self._current is not None:
            return self._current.start_samples
        lookback = lookback_samples(self.options)
        return max(self._last_end_samples, self.position_samples - lookback)

    def _handle_segments(self, segment_events: list[SegmentEvent]) -> list[Event]:
        events: list[Event] = []
        for segment_event in segment_events:
            if isinstance(segment_event, SpeechStarted):
                events += self._start_utterance(segment_event.start_samples)
            elif isinstance(segment_event, SpeechPaused):
                if self._current is not None:
                    self._want_final(self._current, segment_event.end_samples, pause=True)
                    self._current.settle_latest_partial(self._path.last_voiced_end_samples)
                    events += self._finals.issue_requests()
            elif isinstance(segment_event, SpeechResumed):
                events += self._cancel_speculative_final()
            elif isinstance(segment_event, SpeechEnded):
                events += self._end_utterance(segment_event.end_samples, segment_event.reason)
        return events

    def _start_utterance(self, start_samples: int) -> list[Event]:
        silence_ms = samples_to_ms(start_samples - self._last_end_samples)
        if self._finals or self._last_end_samples:
            self.prompt.receive_silence(silence_ms, self.options.prompt_reset_silence_ms)
        utterance = Utterance(next(self._utterance_ids), start_samples)
        utterance.next_partial_samples = self._pacer.first_due(start_samples)
        self._finals.add(utterance)
        self._current = utterance
        return [UtteranceStarted(utterance.utterance_id, start_samples)]

    def _cancel_speculative_final(self) -> list[Event]:
        utterance = self._current
        if utterance is None:
            return []
        request = utterance.resume()
        return [RequestCancelled(request.request_id)] if request is not None else []

    def _end_utterance(self, end_samples: int, reason: str) -> list[Event]:
        utterance = self._current
        if utterance is None:
            return []
        self._current = None
        self._last_end_samples = end_samples
        events: list[Event] = [
            UtteranceStopped(utterance.utterance_id, utterance.start_samples, end_samples, reason)
        ]
        cancelled = utterance.end(end_samples, reason)
        if cancelled is not None:
            events.append(RequestCancelled(cancelled.request_id))
        self._want_final(utterance, end_samples)
        events += self._finals.issue_requests()
        return events + self._emit_ready_finals()

    def _want_final(self, utterance: Utterance, end_samples: int, *, pause: bool = False) -> None:
        """Mark the audio the final should cover, and keep a copy: the buffer moves on while
        the request waits for the previous final (whose text its prompt carries)."""
        audio = None
        if utterance.wanted_final_end != end_samples or utterance.final_audio is None:
            audio = self._audio.slice(utterance.start_samples, end_samples)
        if pause:
            utterance.pause(end_samples, audio)
        else:
            utterance.want_final(end_samples, audio)

    # ------------------------------------------------------------------ requests

    def _maybe_request_partial(self) -> list[Event]:
        utterance = self._current
        if utterance is None or not self.options.partials:
            return []
        due = self._pacer.next_partial(
            utterance,
            self.position_samples,
            self._path.last_voiced_end_samples,
            self.options.silence_duration_ms,
        )
        return [self._requests.partial(utterance, *due)] if due is not None else []

    # ------------------------------------------------------------------ answers

    def _apply_partial(
        self, utterance: Utterance, request: TranscribeRequest, answer: Transcription
    ) -> list[Event]:
        if request.request_id > utterance.applied_partial_id and utterance.final_request is None:
            self._pacer.turnaround_ms = answer.queue_ms + answer.inference_ms
        return apply_partial(utterance, request, answer, self.thresholds)

    def _emit_ready_finals(self) -> list[Event]:
        return self._finals.emit_ready(self.options.language) + self._finish_if_drained()

    def _finish_if_drained(self) -> list[Event]:
        drained = not self._finals and not self._failed.any_retrying
        if self.closing and not self.closed and drained:
            self.closed = True
            return [SessionDrained()]
        return []
