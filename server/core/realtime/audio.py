"""The audio of ``input_audio_buffer.append``: base64 text in, PCM16 bytes out.

G.711 (``audio/pcmu``, ``audio/pcma``; beta ``g711_ulaw``, ``g711_alaw``) is 8 kHz, one byte a
sample; each byte maps to one 16-bit sample through the ITU-T G.711 expansion, so decoding is a
lookup in a 256-entry table.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import numpy.typing as npt

from server.core.errors import InvalidAudio, InvalidMessage
from server.core.realtime.config import PCM, PCMA, PCMU, AudioFormat

# OpenAI's limit on one append event: 15 MiB of audio.
MAX_APPEND_BYTES = 15 * 1024 * 1024


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + 0x84) << exponent
    linear = magnitude - 0x84
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


G711_TABLES = {PCMU: _ulaw_table(), PCMA: _alaw_table()}


def decode_append(audio: object, audio_format: AudioFormat) -> bytes:
    """PCM16 little-endian bytes from an append's base64 ``audio`` in ``audio_format``."""
    if not isinstance(audio, str):
        raise InvalidMessage("audio must be a base64 string", code="invalid_type", param="audio")
    if len(audio) * 3 // 4 > MAX_APPEND_BYTES:
        raise InvalidMessage(
            f"an append holds at most {MAX_APPEND_BYTES} bytes of audio; send smaller pieces",
            code="invalid_value",
            param="audio",
        )
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage(
            "audio is not valid base64", code="invalid_value", param="audio"
        ) from None
    if audio_format == PCM:
        if len(data) % 2:
            raise InvalidAudio("audio/pcm is 16-bit samples: an append must hold whole samples")
        return data
    samples = G711_TABLES[audio_format][np.frombuffer(data, dtype=np.uint8)]
    return samples.astype("<i2").tobytes()
