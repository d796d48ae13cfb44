"""The session's audio path: PCM16 (or G.711) bytes at the client's rate -> 16 kHz frames ->
segmenter events, and the buffer of recent samples that requests are cut from."""

from __future__ import annotations

import numpy as np

from server.core.errors import InvalidAudio, InvalidMessage
from server.core.g711 import decode_g711
from server.core.options import SessionOptions
from server.core.transcription import Samples
from server.core.units import ms_to_samples
from vad.detectors import SpeechDetector
from vad.errors import AudioFormatError
from vad.frames import FrameAssembler, decode_pcm16
from vad.resample import StreamResampler
from vad.segmenter import Segmenter, SegmentEvent


class AudioBuffer:
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


class AudioPath:
    """Resampler, frame assembler and segmenter for one set of options. Built anew while no
    audio has arrived (the format may still change), updated in place afterwards."""

    def __init__(self, options: SessionOptions, detector: SpeechDetector) -> None:
        try:
            self.resampler = StreamResampler(options.sample_rate)
        except AudioFormatError as exc:
            raise InvalidMessage(str(exc), code="unsupported_sample_rate") from exc
        self.segmenter = Segmenter(detector, options.segmenter_options())
        self.assembler = FrameAssembler(detector.frame_samples)
        self.encoding = options.encoding

    def frames(self, data: bytes) -> list[Samples]:
        """The whole 16 kHz frames that ``data`` (the client's encoding and rate) completes."""
        if self.encoding != "pcm16":
            samples = decode_g711(data, self.encoding)
        else:
            try:
                samples = decode_pcm16(data)
            except AudioFormatError as exc:
                raise InvalidAudio(str(exc)) from exc
        return self.assembler.push(self.resampler.push(samples))

    def flush(self) -> list[Samples]:
        """What the resampler and the assembler still hold, as frames (the last one padded)."""
        frames = self.assembler.push(self.resampler.flush())
        last_frame = self.assembler.flush()
        return [*frames, last_frame] if last_frame is not None else frames

    def receive_frame(self, frame: Samples) -> list[SegmentEvent]:
        return self.segmenter.receive_frame(frame)

    def force_end(self, reason: str) -> list[SegmentEvent]:
        return self.segmenter.force_end(reason)

    @property
    def position_samples(self) -> int:
        return self.segmenter.position_samples

    @property
    def last_voiced_end_samples(self) -> int:
        return self.segmenter.last_voiced_end_samples


def lookback_samples(options: SessionOptions) -> int:
    """Audio kept between utterances: the pre-roll, plus enough to cover a candidate onset
    that has not yet reached the minimum speech length."""
    return ms_to_samples(options.prefix_padding_ms + options.min_speech_duration_ms * 8 + 1000)
