"""OpenAI's Realtime transcription-session configuration, mapped onto our session options and
back. Pure: dicts in, dicts out.

    OpenAI (GA ``session``)                        our option
    ---------------------------------------------  ------------------------------------------
    audio.input.format {type: audio/pcm, rate}     sample_rate (24000)
    audio.input.transcription.language             language
    audio.input.transcription.prompt               prompt
    audio.input.transcription.model                (any model name the server serves; checked
                                                   by the caller, not an option)
    audio.input.turn_detection.prefix_padding_ms   prefix_padding_ms
    audio.input.turn_detection.silence_duration_ms silence_duration_ms
    audio.input.turn_detection.threshold           vad_threshold (Silero's scale)
    audio.input.noise_reduction, include           accepted, not acted on

A browser token made for such a session pins these options: the session it opens uses them and
may not change them.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from server.core.errors import InvalidMessage
from server.core.options import SessionOptions, parse_options

_ID_ALPHABET = string.ascii_letters + string.digits
PCM_FORMAT = "audio/pcm"


def openai_id(prefix: str) -> str:
    """An id as OpenAI forms them: ``sess_``, ``item_``, ``event_`` and 21 characters."""
    return f"{prefix}_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where} must be an object", code="invalid_session")
    return value


def options_from_transcription_session(session: Any) -> tuple[dict[str, Any], str | None]:
    """The option changes a GA transcription-session config asks for, and the model it names.
    ``InvalidMessage`` for a config that is not a transcription session or that we refuse."""
    config = _mapping(session, "session")
    if config.get("type", "transcription") != "transcription":
        raise InvalidMessage(
            "only transcription sessions are served here (session.type 'transcription')",
            code="invalid_session",
        )
    audio_input = _mapping(_mapping(config.get("audio"), "session.audio").get("input"), "input")
    changes: dict[str, Any] = {}
    audio_format = _mapping(audio_input.get("format"), "session.audio.input.format")
    if audio_format:
        kind = audio_format.get("type", PCM_FORMAT)
        if kind != PCM_FORMAT:
            raise InvalidMessage(
                f"audio format {kind!r} is not served on this endpoint; use {PCM_FORMAT}",
                code="invalid_session",
            )
        changes["sample_rate"] = audio_format.get("rate", 24000)
    transcription = _mapping(audio_input.get("transcription"), "session.audio.input.transcription")
    for key in ("language", "prompt"):
        if transcription.get(key) is not None:
            changes[key] = transcription[key]
    turn = _mapping(audio_input.get("turn_detection"), "session.audio.input.turn_detection")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if turn.get(key) is not None:
            changes[key] = turn[key]
    if turn.get("threshold") is not None:
        changes["vad_threshold"] = turn["threshold"]
    parse_options(changes)  # refuse what our options refuse, with their message
    model = transcription.get("model")
    return changes, model if isinstance(model, str) else None


def transcription_session_view(
    session_id: str, options: SessionOptions, model: str, *, expires_at: int | None = None
) -> dict[str, Any]:
    """A GA ``realtime.transcription_session`` object describing ``options``."""
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": {"type": PCM_FORMAT, "rate": options.sample_rate},
                "transcription": {
                    "model": model,
                    "language": options.language,
                    "prompt": options.prompt,
                },
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": options.vad_threshold,
                    "prefix_padding_ms": options.prefix_padding_ms,
                    "silence_duration_ms": options.silence_duration_ms,
                },
                "noise_reduction": None,
            }
        },
        "include": [],
    }
