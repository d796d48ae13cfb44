"""Decoding audio files (any container and codec FFmpeg reads) to 16-bit mono PCM with PyAV.

Shared by the clients (files to stream) and the server (uploads to the REST API).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from vad.resample import STREAM_RATE_HZ


class AudioDecodeError(Exception):
    """The input is not audio that FFmpeg can decode."""


class AudioTooLong(AudioDecodeError):
    """The decoded audio passes the length the caller allows."""

    def __init__(self, max_samples: int, sample_rate_hz: int) -> None:
        self.max_s = max_samples / sample_rate_hz
        super().__init__(f"the audio is longer than {self.max_s:g} seconds")


def decode_pcm16(
    source: str | Path | BinaryIO,
    sample_rate_hz: int = STREAM_RATE_HZ,
    *,
    max_samples: int | None = None,
) -> npt.NDArray[np.int16]:
    """Decode the first audio stream, downmixed to mono and resampled to ``sample_rate_hz``.

    ``max_samples`` bounds the decoded length: ``AudioTooLong`` is raised as soon as it is
    passed, so a small file that decodes to hours (Opus at 6 kbit/s) costs no more memory than
    the limit."""
    import av

    name = str(source) if isinstance(source, str | Path) else "the uploaded file"
    try:
        container = av.open(str(source) if isinstance(source, Path) else source, mode="r")
    except (OSError, av.error.FFmpegError) as exc:
        raise AudioDecodeError(f"cannot open {name}: {exc}") from exc
    chunks: list[np.ndarray] = []
    with container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{name} has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate_hz)
        try:
            decoded = 0
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    decoded += len(chunks[-1])
                if max_samples is not None and decoded > max_samples:
                    raise AudioTooLong(max_samples, sample_rate_hz)
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
            if max_samples is not None and sum(len(chunk) for chunk in chunks) > max_samples:
                raise AudioTooLong(max_samples, sample_rate_hz)
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioDecodeError(f"cannot decode {name}: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks).astype(np.int16)
