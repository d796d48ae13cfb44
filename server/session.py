"""The sans-I/O streaming session: audio bytes and model answers in, events out.

The session never calls a model. It emits ``TranscribeRequest`` commands; the edge runs them and
feeds each answer back with ``receive_transcription`` (or ``receive_transcription_failed``).
Its clock is the count of 16 kHz samples received, so the same input gives the same events
however the audio is split into messages.

Utterance lifecycle (one row per rule):

    event from the segmenter      effect
    ----------------------------  ----------------------------------------------------------------
    SpeechStarted(start)          new utterance; UtteranceStarted; partials every
                                  ``partial_interval_ms`` of new audio while speech goes on
    SpeechPaused(end)             speculative final request for [start, end): its answer is the
                                  final if the silence window closes, so finals are ready early
    SpeechResumed                 RequestCancelled for the speculative request
    SpeechEnded(end, reason)      UtteranceStopped; final request for [start, end) unless the
                                  speculative one covers exactly that
    final answer                  FinalText once the utterance has ended, in utterance order;
                                  exactly one per utterance, never revised
    final failed                  SessionError naming the utterance; its audio is kept (the last
                                  ``MAX_RETAINED_FAILURES``) until the client retries it
    receive_retry(utterance)      a new final request for the kept audio; its answer is that
                                  utterance's FinalText (marked ``retried``), out of order

Final requests are issued in utterance order, each after the previous final is known, because
each one's prompt carries the previous finals' text.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.agreement import LocalAgreement, continuation_after, words_of
from server.errors import InvalidAudio, InvalidMessage, SessionClosing
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
from server.load import LoadLevel
from server.options import AUDIO_FORMAT_OPTIONS, SessionOptions
from server.prompt import PromptCarry
from server.quality import QualityThresholds, filter_transcription
from server.transcription import (
    DecodeOptions,
    RequestKind,
    Samples,
    TranscribeRequest,
    Transcription,
)
from vad.detectors import SpeechDetector, make_detector
from vad.errors import AudioFormatError
from vad.frames import FrameAssembler, decode_pcm16
from vad.resample import STREAM_RATE_HZ, StreamResampler
from vad.segmenter import (
    Segmenter,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)

DetectorFactory = Callable[[SessionOptions], SpeechDetector]
# Utterances whose final failed keep their audio for a retry; beyond this many, the oldest go.
MAX_RETAINED_FAILURES = 16


def default_detector(options: SessionOptions) -> SpeechDetector:
    return make_detector(
        options.vad, aggressiveness=options.vad_aggressiveness, threshold=options.vad_threshold
    )


def samples_to_ms(samples: int) -> int:
    return samples * 1000 // STREAM_RATE_HZ


@dataclass(slots=True)
class _Utterance:
    utterance_id: int
    start_samples: int
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    end_samples: int | None = None
    end_reason: str = ""
    wanted_final_end: int | None = None  # end of the audio the final should cover
    final_audio: Samples | None = None  # that audio, kept: its request may wait for the prompt
    final_request: TranscribeRequest | None = None
    final_answer: Transcription | None = None
    final_failed: str | None = None
    next_partial_samples: int = 0
    partial_voiced_end: int = -1  # last voiced sample the previous partial request covered
    applied_partial_id: int = -1
    last_partial: tuple[str, str] | None = None


@dataclass(slots=True)
class _FailedUtterance:
    """An utterance whose final failed: what a retry needs to produce its final."""

    utterance_id: int
    start_samples: int
    end_samples: int
    reason: str
    audio: Samples
    retry_request: TranscribeRequest | None = None


class _AudioBuffer:
    """The stream's recent samples, from ``base_samples`` on, trimmed as they stop mattering."""

    def __init__(self) -> None:
        self.base_samples = 0
        self._chunks: list[Samples] = []
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def append(self, samples: Samples) -> None:
        self._chunks.append(samples)
        self._length += len(samples)

    def slice(self, start: int, end: int) -> Samples:
        whole = self._joined()
        begin = max(start - self.base_samples, 0)
        return whole[begin : max(end - self.base_samples, begin)].copy()

    def trim_before(self, position: int) -> None:
        drop = position - self.base_samples
        if drop <= 0:
            return
        whole = self._joined()
        drop = min(drop, len(whole))
        self._chunks = [whole[drop:]]
        self._length = len(whole) - drop
        self.base_samples += drop

    def _joined(self) -> Samples:
        if len(self._chunks) != 1:
            joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
            self._chunks = [joined]
        return self._chunks[0]


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
        self._request_ids = request_ids or itertools.count(1)
        self._utterance_ids = itertools.count(1)
        self._audio = _AudioBuffer()
        self._utterances: dict[int, _Utterance] = {}  # not yet finalized, in order
        self._failed: dict[int, _FailedUtterance] = {}  # kept for a retry, oldest first
        self._current: _Utterance | None = None
        self._last_end_samples = 0
        self._partial_turnaround_ms = 0.0
        self._load = LoadLevel.NORMAL
        self._audio_started = False
        self.closing = False
        self.closed = False
        self.prompt = PromptCarry(self.options.prompt)
        self._build_audio_path()

    # ------------------------------------------------------------------ inputs

    def receive_audio(self, data: bytes) -> list[Event]:
        """PCM16 little-endian mono at the session's sample rate, any number of whole samples."""
        if self.closing:
            raise SessionClosing("audio after session.close is ignored")
        try:
            samples = decode_pcm16(data)
        except AudioFormatError as exc:
            raise InvalidAudio(str(exc)) from exc
        if len(samples):
            self._audio_started = True
        return self._receive_samples(self._resampler.push(samples))

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
        self.options = new_options
        if not self._audio_started:
            self._build_audio_path()
        else:
            self._segmenter.update_options(new_options.segmenter_options())
        return []

    def receive_commit(self) -> list[Event]:
        """``input_audio.commit``: end the current utterance now. Without speech it does nothing."""
        if self.closing:
            raise SessionClosing("input_audio.commit after session.close is ignored")
        return self._handle_segments(self._segmenter.force_end("commit"))

    def receive_end_of_stream(self) -> list[Event]:
        """The client closed its stream: flush, end the last utterance, close once drained."""
        if self.closing:
            return []
        events = self._receive_samples(self._resampler.flush())
        last_frame = self._assembler.flush()
        if last_frame is not None:
            events += self._receive_frame(last_frame)
        events += self._handle_segments(self._segmenter.force_end("end_of_stream"))
        self.closing = True
        return events + self._finish_if_drained()

    def receive_transcription(
        self, request: TranscribeRequest, answer: Transcription
    ) -> list[Event]:
        """The model's answer to one of this session's requests."""
        failed = self._failed.get(request.utterance_id)
        if failed is not None and failed.retry_request is request and not self.closed:
            del self._failed[request.utterance_id]
            return [self._retried_final(failed, answer), *self._finish_if_drained()]
        utterance = self._utterances.get(request.utterance_id)
        if utterance is None or self.closed:
            return []
        if request.kind is RequestKind.PARTIAL:
            return self._apply_partial(utterance, request, answer)
        if utterance.final_request is not request:
            return []  # a speculative final that speech made obsolete
        utterance.final_answer = answer
        return self._emit_ready_finals()

    def receive_transcription_failed(self, request: TranscribeRequest, message: str) -> list[Event]:
        """The model could not answer. A failed partial is skipped; a failed final is reported."""
        failed = self._failed.get(request.utterance_id)
        if failed is not None and failed.retry_request is request and not self.closed:
            failed.retry_request = None
            return [self._failure_event(failed.utterance_id, message), *self._finish_if_drained()]
        utterance = self._utterances.get(request.utterance_id)
        if (
            utterance is None
            or request.kind is RequestKind.PARTIAL
            or utterance.final_request is not request
        ):
            return []
        utterance.final_failed = message
        return self._emit_ready_finals()

    def receive_partial_progress(
        self, request: TranscribeRequest, text: str, backend: str = ""
    ) -> list[Event]:
        """Text a streaming backend has decoded so far for a partial request. It is shown at
        once when it says more than the partial on screen, and moves no word into the stable
        text: only complete hypotheses do that."""
        utterance = self._utterances.get(request.utterance_id)
        if (
            utterance is None
            or self.closed
            or request.kind is not RequestKind.PARTIAL
            or request.request_id <= utterance.applied_partial_id
            or utterance.final_request is not None
        ):
            return []
        stable = utterance.agreement.stable_text
        tail_words = continuation_after(utterance.agreement.stable_words, words_of(text))
        shown_tail = utterance.last_partial[1] if utterance.last_partial else ""
        if len(tail_words) <= len(words_of(shown_tail)):
            return []  # a new request starts from the utterance's beginning: never shrink
        return [_show_partial(utterance, stable, " ".join(tail_words), request, backend)]

    def receive_load(self, level: LoadLevel) -> list[Event]:
        """The server's load changed: partials come at twice the interval while it is
        ``PARTIALS_SLOWED`` and not at all while ``PARTIALS_PAUSED``; finals are unaffected."""
        self._load = level
        return []

    def receive_retry(self, utterance_id: int) -> list[Event]:
        """``utterance.retry``: transcribe a failed utterance's kept audio again."""
        if self.closing:
            raise SessionClosing("utterance.retry after session.close is ignored")
        failed = self._failed.get(utterance_id)
        if failed is None:
            raise InvalidMessage(
                f"utterance {utterance_id} has no failed final to retry "
                f"(kept: {sorted(self._failed) or 'none'})",
                code="unknown_utterance",
            )
        if failed.retry_request is not None:
            return []  # already on its way
        failed.retry_request = TranscribeRequest(
            request_id=next(self._request_ids),
            session_id=self.session_id,
            utterance_id=utterance_id,
            kind=RequestKind.FINAL,
            audio=failed.audio,
            options=self._decode_options(),
            start_samples=failed.start_samples,
            end_samples=failed.end_samples,
        )
        return [failed.retry_request]

    # ------------------------------------------------------------------ state

    @property
    def position_samples(self) -> int:
        return self._segmenter.position_samples

    @property
    def pending_utterances(self) -> int:
        return len(self._utterances)

    @property
    def buffered_samples(self) -> int:
        """Samples held for requests still to come; bounded however long the stream runs."""
        return self._audio.length

    # ------------------------------------------------------------------ internals

    def _build_audio_path(self) -> None:
        try:
            self._resampler = StreamResampler(self.options.sample_rate)
        except AudioFormatError as exc:
            raise InvalidMessage(str(exc), code="unsupported_sample_rate") from exc
        detector = self._detector_factory(self.options)
        self._segmenter = Segmenter(detector, self.options.segmenter_options())
        self._assembler = FrameAssembler(detector.frame_samples)

    def _receive_samples(self, samples: Samples) -> list[Event]:
        events: list[Event] = []
        for frame in self._assembler.push(samples):
            events += self._receive_frame(frame)
        return events

    def _receive_frame(self, frame: Samples) -> list[Event]:
        self._audio.append(frame)
        events = self._handle_segments(self._segmenter.receive_frame(frame))
        events += self._maybe_request_partial()
        self._audio.trim_before(self._earliest_needed_samples())
        return events

    def _earliest_needed_samples(self) -> int:
        # While speaking, everything from the utterance start; otherwise the pre-roll, plus
        # enough to cover a candidate onset that has not yet reached the minimum speech length.
        if self._current is not None:
            return self._current.start_samples
        options = self.options
        lookback_ms = options.prefix_padding_ms + options.min_speech_duration_ms * 8 + 1000
        lookback = lookback_ms * STREAM_RATE_HZ // 1000
        return max(self._last_end_samples, self.position_samples - lookback)

    def _handle_segments(self, segment_events: list[Any]) -> list[Event]:
        events: list[Event] = []
        for segment_event in segment_events:
            if isinstance(segment_event, SpeechStarted):
                events += self._start_utterance(segment_event.start_samples)
            elif isinstance(segment_event, SpeechPaused):
                if self._current is not None:
                    self._want_final(self._current, segment_event.end_samples)
                    events += self._issue_final_requests()
            elif isinstance(segment_event, SpeechResumed):
                events += self._cancel_speculative_final()
            elif isinstance(segment_event, SpeechEnded):
                events += self._end_utterance(segment_event.end_samples, segment_event.reason)
        return events

    def _start_utterance(self, start_samples: int) -> list[Event]:
        silence_ms = samples_to_ms(start_samples - self._last_end_samples)
        if self._utterances or self._last_end_samples:
            self.prompt.receive_silence(silence_ms, self.options.prompt_reset_silence_ms)
        utterance = _Utterance(next(self._utterance_ids), start_samples)
        # The first partial is not slowed by load: it shows the speaker they are heard.
        utterance.next_partial_samples = start_samples + self._ms_to_samples(
            self.options.partial_interval_ms
        )
        self._utterances[utterance.utterance_id] = utterance
        self._current = utterance
        return [UtteranceStarted(utterance.utterance_id, start_samples)]

    def _cancel_speculative_final(self) -> list[Event]:
        utterance = self._current
        if utterance is None:
            return []
        utterance.wanted_final_end = None
        utterance.final_audio = None
        utterance.final_answer = None
        request, utterance.final_request = utterance.final_request, None
        return [RequestCancelled(request.request_id)] if request is not None else []

    def _end_utterance(self, end_samples: int, reason: str) -> list[Event]:
        utterance = self._current
        if utterance is None:
            return []
        self._current = None
        self._last_end_samples = end_samples
        utterance.end_samples = end_samples
        utterance.end_reason = reason
        events: list[Event] = [
            UtteranceStopped(utterance.utterance_id, utterance.start_samples, end_samples, reason)
        ]
        request = utterance.final_request
        if request is not None and request.end_samples != end_samples:
            events.append(RequestCancelled(request.request_id))
            utterance.final_request = None
            utterance.final_answer = None
        self._want_final(utterance, end_samples)
        events += self._issue_final_requests()
        return events + self._emit_ready_finals()

    def _want_final(self, utterance: _Utterance, end_samples: int) -> None:
        """Mark the audio the final should cover, and keep a copy: the buffer moves on while
        the request waits for the previous final (whose text its prompt carries)."""
        if utterance.wanted_final_end != end_samples or utterance.final_audio is None:
            utterance.final_audio = self._audio.slice(utterance.start_samples, end_samples)
        utterance.wanted_final_end = end_samples

    def _issue_final_requests(self) -> list[Event]:
        """Request the final of the first unfinished utterance if it wants one and has none."""
        for utterance in self._utterances.values():
            if utterance.final_answer is None and utterance.final_failed is None:
                if utterance.final_request is None and utterance.wanted_final_end is not None:
                    # The stable words are frozen from here on (no partial is applied after
                    # this request); the model decodes the whole utterance freely and the final
                    # keeps the stable words, aligned to its answer (``LocalAgreement.finalize``).
                    request = self._request(
                        utterance,
                        RequestKind.FINAL,
                        utterance.wanted_final_end,
                        audio=utterance.final_audio,
                    )
                    utterance.final_request = request
                    utterance.final_audio = None
                    return [request]
                return []
        return []

    def _maybe_request_partial(self) -> list[Event]:
        """Partials follow new speech, never faster than the model answers them.

        A partial is due every ``partial_interval_ms`` of new audio, but only if speech was
        heard since the previous one (re-transcribing a pause shows nothing new and delays the
        final), and no sooner than the last partial's turnaround (queue wait plus inference):
        under load, partials slow down before finals do.
        """
        utterance = self._current
        if (
            utterance is None
            or not self.options.partials
            or self._load is LoadLevel.PARTIALS_PAUSED
            or utterance.wanted_final_end is not None  # paused: the final is on its way
            or self.position_samples < utterance.next_partial_samples
        ):
            return []
        voiced_end = self._segmenter.last_voiced_end_samples
        if voiced_end <= utterance.partial_voiced_end:
            return []
        utterance.partial_voiced_end = voiced_end
        interval = self._partial_interval_samples()
        if self.position_samples - utterance.start_samples < 2 * interval:
            # Early in an utterance, twice as often: the request at speech onset often hears
            # too little to give text, and the first words tell the speaker they are heard.
            interval //= 2
        utterance.next_partial_samples = self.position_samples + interval
        return [self._request(utterance, RequestKind.PARTIAL, self.position_samples)]

    def _partial_interval_samples(self) -> int:
        interval_ms = self.options.partial_interval_ms
        if self._load is LoadLevel.PARTIALS_SLOWED:
            interval_ms *= 2
        return self._ms_to_samples(max(interval_ms, self._partial_turnaround_ms))

    @staticmethod
    def _ms_to_samples(milliseconds: float) -> int:
        return int(milliseconds * STREAM_RATE_HZ // 1000)

    def _request(
        self,
        utterance: _Utterance,
        kind: RequestKind,
        end: int,
        *,
        audio: Samples | None = None,
    ) -> TranscribeRequest:
        return TranscribeRequest(
            request_id=next(self._request_ids),
            session_id=self.session_id,
            utterance_id=utterance.utterance_id,
            kind=kind,
            audio=audio if audio is not None else self._audio.slice(utterance.start_samples, end),
            options=self._decode_options(),
            start_samples=utterance.start_samples,
            end_samples=end,
        )

    def _decode_options(self) -> DecodeOptions:
        return DecodeOptions(
            language=self.options.language,
            prompt=self.prompt.prompt(),
            carried_prompt_chars=len(self.prompt.carried),
            partial_backend=self.options.partial_backend,
        )

    def _apply_partial(
        self, utterance: _Utterance, request: TranscribeRequest, answer: Transcription
    ) -> list[Event]:
        if (
            request.request_id <= utterance.applied_partial_id
            or utterance.final_request is not None
        ):
            return []  # stale, or the stable words are already frozen into a final request
        utterance.applied_partial_id = request.request_id
        self._partial_turnaround_ms = answer.queue_ms + answer.inference_ms
        text, _ = filter_transcription(answer, self.thresholds)
        stable, unstable = utterance.agreement.receive_hypothesis(text)
        if (stable, unstable) == utterance.last_partial or not (stable or unstable):
            return []
        return [_show_partial(utterance, stable, unstable, request, answer.backend)]

    def _emit_ready_finals(self) -> list[Event]:
        """Finals of ended utterances whose answers are in, oldest first, stopping at a gap."""
        events: list[Event] = []
        while self._utterances:
            utterance = next(iter(self._utterances.values()))
            if utterance.end_samples is None or (
                utterance.final_answer is None and utterance.final_failed is None
            ):
                break
            del self._utterances[utterance.utterance_id]
            events.append(self._final_event(utterance))
            events += self._issue_final_requests()
        return events + self._finish_if_drained()

    def _final_event(self, utterance: _Utterance) -> FinalText | SessionError:
        assert utterance.end_samples is not None and utterance.final_request is not None
        request = utterance.final_request
        if utterance.final_failed is not None:
            self._keep_failed(utterance, request)
            return self._failure_event(utterance.utterance_id, utterance.final_failed)
        answer = utterance.final_answer
        assert answer is not None
        text, dropped = filter_transcription(answer, self.thresholds)
        if utterance.end_reason != "max_duration":
            text = utterance.agreement.finalize(text)
        # else: partials heard audio past the cut, so their stable words may belong to the next
        # utterance; the final of a forced cut is its own transcription, or words would repeat.
        final = _final_text(
            utterance.utterance_id,
            (utterance.start_samples, utterance.end_samples),
            utterance.end_reason,
            request,
            answer,
            (text, dropped),
            self.options.language,
        )
        if text and not dropped:
            self.prompt.receive_final(text, final.language)
        return final

    def _keep_failed(self, utterance: _Utterance, request: TranscribeRequest) -> None:
        assert utterance.end_samples is not None
        self._failed[utterance.utterance_id] = _FailedUtterance(
            utterance.utterance_id,
            utterance.start_samples,
            utterance.end_samples,
            utterance.end_reason,
            request.audio,
        )
        while len(self._failed) > MAX_RETAINED_FAILURES:
            del self._failed[next(iter(self._failed))]

    def _failure_event(self, utterance_id: int, message: str) -> SessionError:
        return SessionError(
            "transcription_failed",
            f"utterance {utterance_id} could not be transcribed: {message}; its audio is kept: "
            "send utterance.retry to try again",
            utterance_id,
        )

    def _retried_final(self, failed: _FailedUtterance, answer: Transcription) -> FinalText:
        assert failed.retry_request is not None
        final = _final_text(
            failed.utterance_id,
            (failed.start_samples, failed.end_samples),
            failed.reason,
            failed.retry_request,
            answer,
            filter_transcription(answer, self.thresholds),
            self.options.language,
        )
        return dataclasses.replace(final, retried=True)

    def _finish_if_drained(self) -> list[Event]:
        retrying = any(failed.retry_request for failed in self._failed.values())
        if self.closing and not self.closed and not self._utterances and not retrying:
            self.closed = True
            return [SessionDrained()]
        return []


def _final_text(
    utterance_id: int,
    span: tuple[int, int],
    reason: str,
    request: TranscribeRequest,
    answer: Transcription,
    filtered: tuple[str, str | None],
    session_language: str | None,
) -> FinalText:
    """The final event for an answer, with the text the quality filter (and agreement) left."""
    text, dropped = filtered
    return FinalText(
        utterance_id=utterance_id,
        text=text,
        start_samples=span[0],
        end_samples=span[1],
        reason=reason,
        language=answer.language or session_language,
        prompt=request.options.prompt,
        backend=answer.backend,
        inference_ms=answer.inference_ms,
        dropped=dropped,
        usage=answer.usage,
        failover_reason=answer.failover_reason,
    )


def _show_partial(
    utterance: _Utterance, stable: str, tail: str, request: TranscribeRequest, backend: str
) -> PartialText:
    """Remember what the partial shows (stable words, then the tail), and make its event."""
    utterance.last_partial = (stable, tail)
    return PartialText(
        utterance.utterance_id,
        " ".join(part for part in (stable, tail) if part),
        stable,
        utterance.start_samples,
        request.end_samples,
        backend,
    )
