"""Units of the stream clock. Inside the core, time is a count of samples at 16 kHz (the rate
is defined once, in ``vad.resample``); milliseconds and seconds appear only in events and at
the edges."""

from __future__ import annotations

from vad.resample import STREAM_RATE_HZ

__all__ = ["STREAM_RATE_HZ", "ms_to_samples", "samples_to_ms", "samples_to_seconds"]


def samples_to_ms(samples: int) -> int:
    return samples * 1000 // STREAM_RATE_HZ


def ms_to_samples(milliseconds: float) -> int:
    return int(milliseconds * STREAM_RATE_HZ // 1000)


def samples_to_seconds(samples: int) -> float:
    return samples / STREAM_RATE_HZ
