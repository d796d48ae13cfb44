"""Streaming resampling of client audio to the 16 kHz the detectors and Whisper expect."""

from __future__ import annotations

import numpy as np
import soxr

from vad.errors import AudioFormatError
from vad.frames import Samples

STREAM_RATE_HZ = 16_000
SUPPORTED_RATES_HZ = (8_000, 16_000, 24_000, 44_100, 48_000)


class StreamResampler:
    """Resamples a stream chunk by chunk with soxr, keeping the filter state between chunks.

    At 16 kHz input it passes samples through untouched, so the common case costs nothing.
    """

    def __init__(self, input_rate_hz: int, output_rate_hz: int = STREAM_RATE_HZ) -> None:
        if input_rate_hz not in SUPPORTED_RATES_HZ:
            supported = ", ".join(str(rate) for rate in SUPPORTED_RATES_HZ)
            raise AudioFormatError(
                f"unsupported sample rate {input_rate_hz} Hz; supported: {supported}"
            )
        self.input_rate_hz = input_rate_hz
        self.output_rate_hz = output_rate_hz
        self._stream: soxr.ResampleStream | None = None
        if input_rate_hz != output_rate_hz:
            self._stream = soxr.ResampleStream(
                input_rate_hz, output_rate_hz, 1, dtype="float32", quality="HQ"
            )

    def push(self, samples: Samples) -> Samples:
        """Resample one chunk; the output may lag the input by the filter's delay."""
        if self._stream is None:
            return samples
        out: Samples = self._stream.resample_chunk(samples, last=False)
        return out.astype(np.float32, copy=False)

    def flush(self) -> Samples:
        """Drain the filter at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out: Samples = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return out.astype(np.float32, copy=False)
