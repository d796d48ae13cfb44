"""Audio sources for the clients: any file PyAV can decode, as mono PCM16 at a chosen rate."""

from __future__ import annotations

from pathlib import Path

from server.core.audio_files import AudioDecodeError, decode_pcm16

SourceError = AudioDecodeError


def decode_file(path: str | Path, sample_rate_hz: int = 16_000) -> bytes:
    """Decode and resample a whole file to mono PCM16 little-endian bytes."""
    return decode_pcm16(path, sample_rate_hz).astype("<i2").tobytes()
