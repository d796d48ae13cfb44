"""Bytes of any size in, fixed-size frames of float32 samples out."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vad.errors import AudioFormatError

Samples = npt.NDArray[np.float32]

_INT16_SCALE = 32768.0


def decode_pcm16(data: bytes) -> Samples:
    """Decode little-endian signed 16-bit PCM into float32 samples in [-1, 1).

    Raises ``AudioFormatError`` for an odd byte count: a message must hold whole samples, and
    guessing where a stray byte belongs would shift every later sample into noise.
    """
    if len(data) % 2:
        raise AudioFormatError(
            f"PCM16 audio needs an even number of bytes; this message has {len(data)}"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _INT16_SCALE


def frame_rms(frame: Samples) -> float:
    """The frame's root-mean-square level (1.0: full scale)."""
    return float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))


def to_pcm16(samples: Samples) -> bytes:
    """Encode float samples as little-endian PCM16, clipping at full scale."""
    scaled = np.clip(np.round(samples * _INT16_SCALE), -32768, 32767)
    return scaled.astype("<i2").tobytes()


class FrameAssembler:
    """Collects samples of any count and hands out frames of exactly ``frame_samples``."""

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_samples = frame_samples
        self._pending: Samples = np.zeros(0, dtype=np.float32)

    @property
    def pending_samples(self) -> int:
        """Samples received but not yet handed out as a frame."""
        return len(self._pending)

    def push(self, samples: Samples) -> list[Samples]:
        """Add samples; return every frame completed by them, in order."""
        buffered = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(buffered) - len(buffered) % self.frame_samples
        frames = [
            buffered[start : start + self.frame_samples]
            for start in range(0, whole, self.frame_samples)
        ]
        self._pending = buffered[whole:].copy()
        return frames

    def flush(self) -> Samples | None:
        """Return the last partial frame padded with silence, or None when nothing is pending."""
        if not len(self._pending):
            return None
        frame = np.zeros(self.frame_samples, dtype=np.float32)
        frame[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return frame
