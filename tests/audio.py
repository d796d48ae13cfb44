"""Synthetic signals with known edges, for the core's tests."""

from __future__ import annotations

import numpy as np

RATE_HZ = 16_000


def silence(ms: int, rate_hz: int = RATE_HZ) -> np.ndarray:
    return np.zeros(rate_hz * ms // 1000, dtype=np.float32)


def tone(
    ms: int, frequency_hz: float = 440.0, level: float = 0.3, rate_hz: int = RATE_HZ
) -> np.ndarray:
    t = np.arange(rate_hz * ms // 1000) / rate_hz
    return (level * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def noise(ms: int, level: float = 0.001, seed: int = 0, rate_hz: int = RATE_HZ) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(rate_hz * ms // 1000)).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


def bursts(*pattern_ms: int) -> np.ndarray:
    """Alternating silence and tone: bursts(500, 1000, 700, ...) = 500 ms silence, 1 s tone..."""
    parts = [silence(ms) if index % 2 == 0 else tone(ms) for index, ms in enumerate(pattern_ms)]
    return np.concatenate(parts)


def write_wav(path, pcm: bytes, rate_hz: int = RATE_HZ) -> None:
    """PCM16 mono bytes as a WAV file (what fake microphones and --source-file read)."""
    import wave

    with wave.open(path if hasattr(path, "write") else str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate_hz)
        out.writeframes(pcm)


def wav_bytes(pcm: bytes, rate_hz: int = RATE_HZ) -> bytes:
    """PCM16 mono bytes as the bytes of a WAV file (an upload)."""
    import io

    buffer = io.BytesIO()
    write_wav(buffer, pcm, rate_hz)
    return buffer.getvalue()
