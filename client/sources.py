"""Audio sources for the clients: any file PyAV can decode, as mono PCM16 at a chosen rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SourceError(Exception):
    """The audio source cannot be read."""


def decode_file(path: str | Path, sample_rate_hz: int = 16_000) -> bytes:
    """Decode and resample a whole file to mono PCM16 little-endian bytes."""
    import av

    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as exc:
        raise SourceError(f"cannot open {path}: {exc}") from exc
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate_hz)
    chunks: list[np.ndarray] = []
    with container:
        if not container.streams.audio:
            raise SourceError(f"{path} has no audio stream")
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise SourceError(f"cannot decode {path}: {exc}") from exc
    if not chunks:
        return b""
    return np.concatenate(chunks).astype("<i2").tobytes()
