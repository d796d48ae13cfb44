"""Cuts a stream of scored frames into utterances.

Rules (positions are sample counts at 16 kHz from the start of the stream):

    state     frame           condition                                   action
    --------  --------------  ------------------------------------------  -------------------------
    IDLE      voiced          candidate's voiced samples >= min speech    -> SPEAKING, SpeechStarted
                                                                          at first voiced - prefix
                                                                          padding (never before the
                                                                          previous utterance's end)
    IDLE      unvoiced        gap since the candidate's last voice        drop the candidate
                              > candidate gap
    SPEAKING  voiced          paused                                      SpeechResumed
    SPEAKING  unvoiced        trailing silence >= end padding             SpeechPaused(end)
    SPEAKING  unvoiced        trailing silence >= silence duration        -> IDLE, SpeechEnded(end)
                              (unless ``end_on_silence`` is off: then
                              only a commit or the max duration ends it);
                              once the utterance is ``long_utterance_ms``
                              long, a ``long_utterance_silence_ms`` pause
                              is enough
    SPEAKING  any             utterance length >= max duration            SpeechEnded(cut) and
                                                                          SpeechStarted(cut) at the
                                                                          quietest recent frame
    any       force_end()     SPEAKING, or IDLE with a candidate          -> IDLE, SpeechEnded(now;
                                                                          if paused, where the
                                                                          pause began)
    any       clear()                                                     -> IDLE, nothing emitted:
                                                                          the audio so far is
                                                                          dropped

``end`` is the last voiced frame's end plus the end padding, so trailing consonants stay in the
utterance. Utterances never overlap: each starts at or after the previous one's end, so no word
is transcribed twice, and a forced cut lands where the signal is quietest, so no word is split.
While SPEAKING, frames count as voiced down to ``threshold - hysteresis`` (Silero's convention),
which keeps soft word endings from ending the utterance.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from vad.detectors import SpeechDetector
from vad.frames import Samples, frame_rms
from vad.resample import STREAM_RATE_HZ

_HYSTERESIS = 0.15
_CANDIDATE_GAP_MS = 300


class SegmenterState(enum.Enum):
    IDLE = "idle"
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class SegmenterOptions:
    """Timing rules of the segmenter, in milliseconds of stream time."""

    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_duration_ms: int = 250
    max_utterance_duration_ms: int = 15_000
    end_padding_ms: int = 200
    cut_search_ms: int = 3_000
    # Off for clients that decide turns themselves (OpenAI's ``turn_detection: null``).
    end_on_silence: bool = True
    # Continuous speech (reading, a lecture) pauses briefly between phrases but rarely for a
    # whole silence window: once an utterance is this long (0: half the max duration), a short
    # pause ends it, so its final comes then instead of after a forced cut seconds later.
    long_utterance_ms: int = 0
    long_utterance_silence_ms: int = 250

    def samples(self, milliseconds: int) -> int:
        return milliseconds * STREAM_RATE_HZ // 1000


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    start_samples: int


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """Trailing silence reached the end padding: the utterance ends at ``end_samples`` unless
    speech resumes before the silence window closes."""

    end_samples: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    pass


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    end_samples: int
    reason: str  # "silence", "max_duration", "commit" or "end_of_stream"


SegmentEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


class Segmenter:
    """The silence / speech / hangover state machine described in the module docstring."""

    def __init__(self, detector: SpeechDetector, options: SegmenterOptions) -> None:
        self.detector = detector
        self.options = options
        self.state = SegmenterState.IDLE
        self.position_samples = 0
        self.utterance_start_samples = 0
        self._floor_samples = 0  # no utterance may start before this (the last one's end)
        self._candidate_first_voiced: int | None = None
        self._candidate_voiced_samples = 0
        self._candidate_last_voiced_end = 0
        self._last_voiced_end = 0
        self._paused = False
        # (frame start, rms, voiced) for the frames a forced cut may choose from.
        self._recent: deque[tuple[int, float, bool]] = deque()

    @property
    def frame_samples(self) -> int:
        return self.detector.frame_samples

    @property
    def last_voiced_end_samples(self) -> int:
        """End of the last frame counted as speech in the current utterance."""
        return self._last_voiced_end

    def update_options(self, options: SegmenterOptions) -> None:
        """Apply new timing rules from the next frame on."""
        self.options = options

    def receive_frame(self, frame: Samples) -> list[SegmentEvent]:
        """Score one frame of exactly ``frame_samples`` samples and advance the state machine."""
        if len(frame) != self.frame_samples:
            raise ValueError(f"expected a frame of {self.frame_samples} samples, got {len(frame)}")
        frame_start = self.position_samples
        frame_end = frame_start + len(frame)
        self.position_samples = frame_end
        probability = self.detector.speech_probability(frame)
        rms = frame_rms(frame)
        if self.state is SegmenterState.IDLE:
            voiced = probability >= self.detector.threshold
            self._remember(frame_start, rms, voiced)
            return self._idle_frame(frame_start, frame_end, voiced)
        voiced = probability >= self.detector.threshold - _HYSTERESIS
        self._remember(frame_start, rms, voiced)
        return self._speaking_frame(frame_end, voiced)

    def force_end(self, reason: str) -> list[SegmentEvent]:
        """End the current utterance at the current position (a commit or the end of stream).

        A candidate too short to have started an utterance is promoted first: a client that
        commits a short "yes" means it.
        """
        events: list[SegmentEvent] = []
        if self.state is SegmenterState.IDLE:
            if self._candidate_first_voiced is None:
                return events
            events.append(self._start_utterance(self._candidate_first_voiced))
        end = self.position_samples
        if self._paused:
            # Speech had paused: end where the pause began (as SpeechPaused said), so the
            # speculative final asked for then is the final, and no trailing silence is sent.
            end = self._last_voiced_end + self.options.samples(self._end_padding_ms())
        events.append(SpeechEnded(end, reason))
        self._become_idle(end)
        return events

    def clear(self) -> None:
        """Forget the utterance in progress (and any candidate): the client discarded its
        audio. Nothing later may start before this point."""
        self._become_idle(self.position_samples)

    def _end_padding_ms(self) -> int:
        return min(self.options.end_padding_ms, self.options.silence_duration_ms)

    def _remember(self, frame_start: int, rms: float, voiced: bool) -> None:
        self._recent.append((frame_start, rms, voiced))
        horizon = self.options.samples(self.options.cut_search_ms)
        while self._recent and self._recent[0][0] < self.position_samples - horizon:
            self._recent.popleft()

    def _idle_frame(self, frame_start: int, frame_end: int, voiced: bool) -> list[SegmentEvent]:
        if not voiced:
            gap = frame_end - self._candidate_last_voiced_end
            if self._candidate_first_voiced is not None and gap > self.options.samples(
                _CANDIDATE_GAP_MS
            ):
                self._candidate_first_voiced = None
                self._candidate_voiced_samples = 0
            return []
        if self._candidate_first_voiced is None:
            self._candidate_first_voiced = frame_start
        self._candidate_voiced_samples += frame_end - frame_start
        self._candidate_last_voiced_end = frame_end
        if self._candidate_voiced_samples < self.options.samples(
            self.options.min_speech_duration_ms
        ):
            return []
        return [self._start_utterance(self._candidate_first_voiced)]

    def _start_utterance(self, first_voiced: int) -> SpeechStarted:
        start = max(first_voiced - self.options.samples(self.options.prefix_padding_ms), 0)
        start = max(start, self._floor_samples)
        self.state = SegmenterState.SPEAKING
        self.utterance_start_samples = start
        self._last_voiced_end = max(self._candidate_last_voiced_end, start)
        self._paused = False
        self._candidate_first_voiced = None
        self._candidate_voiced_samples = 0
        return SpeechStarted(start)

    def _speaking_frame(self, frame_end: int, voiced: bool) -> list[SegmentEvent]:
        options = self.options
        events: list[SegmentEvent] = []
        if voiced:
            self._last_voiced_end = frame_end
            if self._paused:
                self._paused = False
                events.append(SpeechResumed())
        else:
            trailing = frame_end - self._last_voiced_end
            end_padding = self._end_padding_ms()
            end = self._last_voiced_end + options.samples(end_padding)
            if options.end_on_silence and trailing >= self._silence_needed_samples(frame_end):
                events.append(SpeechEnded(end, "silence"))
                self._become_idle(end)
                return events
            if not self._paused and trailing >= options.samples(end_padding):
                self._paused = True
                events.append(SpeechPaused(end))
        if frame_end - self.utterance_start_samples >= options.samples(
            options.max_utterance_duration_ms
        ):
            events.extend(self._cut_at_quietest_point(frame_end))
        return events

    def _silence_needed_samples(self, frame_end: int) -> int:
        """The silence that ends the utterance now: the window, or a short pause once long."""
        options = self.options
        window = options.samples(options.silence_duration_ms)
        long_after = options.long_utterance_ms or options.max_utterance_duration_ms // 2
        if frame_end - self.utterance_start_samples < options.samples(long_after):
            return window
        return min(window, options.samples(max(options.long_utterance_silence_ms, 1)))

    def _cut_at_quietest_point(self, frame_end: int) -> list[SegmentEvent]:
        # Never cut in the first half of the utterance: that would leave a stub final.
        earliest = self.utterance_start_samples + (frame_end - self.utterance_start_samples) // 2
        choices = [(rms, start) for start, rms, _ in self._recent if start > earliest]
        cut = min(choices)[1] if choices else frame_end
        voiced_after_cut = [start for start, _, voiced in self._recent if voiced and start >= cut]
        self._paused = False
        self.utterance_start_samples = cut
        self._floor_samples = cut
        self._last_voiced_end = (
            voiced_after_cut[-1] + self.frame_samples if voiced_after_cut else cut
        )
        return [SpeechEnded(cut, "max_duration"), SpeechStarted(cut)]

    def _become_idle(self, end: int) -> None:
        self.state = SegmenterState.IDLE
        self._floor_samples = end
        self._paused = False
        self._candidate_first_voiced = None
        self._candidate_voiced_samples = 0
