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


def decode_pcm16(
    source: str | Path | BinaryIO, sample_rate_hz: int = STREAM_RATE_HZ
) -> npt.NDArray[np.int16]:
    """Decode the first audio stream, downmixed to mono and resampled to ``sample_rate_hz``."""
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
            for frame in container.decode(audio=0):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioDecodeError(f"cannot decode {name}: {exc}") from exc
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks).astype(np.int16)
