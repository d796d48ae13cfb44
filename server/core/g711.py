"""G.711 telephone audio (8 kHz, one byte a sample): mu-law (``g711_ulaw``, OpenAI's
``audio/pcmu``) and A-law (``g711_alaw``, ``audio/pcma``). Each byte stands for one 16-bit
sample through the ITU-T G.711 expansion, so decoding is a lookup in a 256-entry table."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from server.core.transcription import Samples

G711_RATE_HZ = 8000


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    linear = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -linear, linear).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


TABLES = {"g711_ulaw": _ulaw_table(), "g711_alaw": _alaw_table()}


def decode_g711(data: bytes, encoding: str) -> Samples:
    """float32 samples in [-1, 1) from G.711 bytes of ``encoding``."""
    linear = TABLES[encoding][np.frombuffer(data, dtype=np.uint8)]
    return linear.astype(np.float32) / 32768.0
