"""The audio of ``input_audio_buffer.append``: base64 text in, the session's encoded bytes out
(PCM16, or G.711 that the session's audio path decodes)."""

from __future__ import annotations

import base64
import binascii

from server.core.errors import InvalidMessage

# OpenAI's limit on one append event: 15 MiB of audio.
MAX_APPEND_BYTES = 15 * 1024 * 1024


def decode_append(audio: object) -> bytes:
    if not isinstance(audio, str):
        raise InvalidMessage("audio must be a base64 string", code="invalid_type", param="audio")
    if len(audio) * 3 // 4 > MAX_APPEND_BYTES:
        raise InvalidMessage(
            f"an append holds at most {MAX_APPEND_BYTES} bytes of audio; send smaller pieces",
            code="invalid_value",
            param="audio",
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage(
            "audio is not valid base64", code="invalid_value", param="audio"
        ) from None
