"""The websocket wire protocol, version 1: client messages in, server messages out.

Pure functions over strings and dicts; see docs/protocol.md for the reader's version.
Audio travels in binary messages and never passes through here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.core.errors import InvalidMessage
from server.core.events import (
    FinalText,
    PartialText,
    SessionError,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.load_report import LoadLevel, LoadReport
from server.core.options import SessionOptions, parse_options
from server.core.units import samples_to_ms

# Websocket close codes the server uses (RFC 6455, section 7.4.1).
CLOSE_NORMAL = 1000  # the session ended as it should
CLOSE_GOING_AWAY = 1001  # resumed on another connection, or the client left
CLOSE_POLICY = 1008  # refused: credentials, limits, a client that does not read
CLOSE_INTERNAL_ERROR = 1011  # a bug on our side
CLOSE_SERVICE_RESTART = 1012  # the server is restarting: reconnect (OpenAI's Realtime drains)
CLOSE_TRY_AGAIN_LATER = 1013  # overloaded or shutting down: try again later

PROTOCOL_VERSION = 1
MAX_TEXT_MESSAGE_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    utterance_id: int


ClientMessage = SessionUpdate | Commit | Close | Retry


def parse_client_message(text: str) -> ClientMessage:
    """Parse one text message. Raises ``InvalidMessage`` with a code saying what is wrong."""
    if len(text) > MAX_TEXT_MESSAGE_CHARS:
        raise InvalidMessage(
            f"text messages are limited to {MAX_TEXT_MESSAGE_CHARS} characters",
            code="message_too_large",
        )
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidMessage(
            "text messages must be JSON objects; audio goes in binary messages",
            code="invalid_json",
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidMessage('a message must be a JSON object with a string "type"')
    kind = message["type"]
    if kind == "session.update":
        session = message.get("session", {})
        if not isinstance(session, dict):
            raise InvalidMessage('"session" must be an object of session options')
        return SessionUpdate(dict(session))
    if kind == "input_audio.commit":
        return Commit()
    if kind == "session.close":
        return Close()
    if kind == "utterance.retry":
        utterance_id = message.get("utterance_id")
        if not isinstance(utterance_id, int) or isinstance(utterance_id, bool):
            raise InvalidMessage('utterance.retry needs an integer "utterance_id"')
        return Retry(utterance_id)
    raise InvalidMessage(
        f"unknown message type {kind!r}; expected session.update, input_audio.commit, "
        "utterance.retry or session.close",
        code="unknown_message_type",
    )


def options_from_query(params: Mapping[str, str]) -> SessionOptions:
    """Session options from websocket query parameters (strings, converted and validated)."""
    values: dict[str, Any] = {}
    for key, raw in params.items():
        if key in ("token", "session_id", "resume_token", "last_final_id"):
            continue  # authentication and resumption, handled by the edge
        values[key] = int(raw) if key == "sample_rate" and raw.isdigit() else raw
    return parse_options(values)


def _base(kind: str, session_id: str) -> dict[str, Any]:
    return {"type": kind, "session_id": session_id}


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(8)


def session_created(
    session_id: str,
    options: SessionOptions,
    model: str,
    *,
    resume_token: str | None = None,
    watch_token: str | None = None,
) -> dict[str, Any]:
    message = _base("session.created", session_id)
    message.update(protocol=PROTOCOL_VERSION, model=model, session=options.model_dump())
    if resume_token is not None:
        message["resume_token"] = resume_token
    if watch_token is not None:
        message["watch_token"] = watch_token
    return message


def watch_started(session_id: str, finals_so_far: int) -> dict[str, Any]:
    """First message to a viewer; the ``finals_so_far`` finals follow at once."""
    message = _base("watch.started", session_id)
    message["finals"] = finals_so_far
    return message


def session_resumed(session_id: str, last_audio_seq: int, replayed_finals: int) -> dict[str, Any]:
    """Answer to a resume: audio messages after ``last_audio_seq`` must be sent again; the
    ``replayed_finals`` finals the client missed follow."""
    message = _base("session.resumed", session_id)
    message.update(last_audio_seq=last_audio_seq, replayed_finals=replayed_finals)
    return message


def audio_ack(session_id: str, seq: int, final_safe_seq: int) -> dict[str, Any]:
    """Audio messages 1 to ``seq`` are processed; 1 to ``final_safe_seq`` are final-safe: every
    final that needs them is sent, so the client may forget them. Only those: a server that
    dies loses what it processed but did not finalize, and the client sends it again."""
    message = _base("input_audio.ack", session_id)
    message.update(seq=seq, final_safe_seq=final_safe_seq)
    return message


def session_updated(session_id: str, options: SessionOptions) -> dict[str, Any]:
    message = _base("session.updated", session_id)
    message["session"] = options.model_dump()
    return message


def session_closed(session_id: str, reason: str, last_audio_seq: int) -> dict[str, Any]:
    """The session is over; audio messages 1 to ``last_audio_seq`` were transcribed and their
    finals sent. After ``server_shutdown`` a client with more to say opens a new session (on
    any server) and sends the messages after ``last_audio_seq`` there."""
    message = _base("session.closed", session_id)
    message.update(reason=reason, last_audio_seq=last_audio_seq)
    return message


def load_notice(session_id: str, report: LoadReport) -> dict[str, Any]:
    """``session.degraded`` when the server sheds partial work (partials ``slowed`` or
    ``paused``), ``session.recovered`` when it is back to ``normal``. Finals are never shed."""
    kind = "session.recovered" if report.level is LoadLevel.NORMAL else "session.degraded"
    message = _base(kind, session_id)
    message.update(
        partials=report.level.wire_name,
        reason=report.reason,
        final_latency_p95_ms=(
            None if report.final_latency_p95_ms is None else round(report.final_latency_p95_ms)
        ),
    )
    return message


def error(
    session_id: str, code: str, message: str, utterance_id: int | None = None
) -> dict[str, Any]:
    wire = _base("error", session_id)
    wire.update(code=code, message=message)
    if utterance_id is not None:
        wire["utterance_id"] = utterance_id
    return wire


def event_message(
    session_id: str,
    event: UtteranceStarted | UtteranceStopped | PartialText | FinalText | SessionError,
) -> dict[str, Any]:
    """The wire form of a core event; stream positions become milliseconds."""
    if isinstance(event, SessionError):
        return error(session_id, event.code, event.message, event.utterance_id)
    if isinstance(event, UtteranceStarted):
        message = _base("speech.started", session_id)
        message.update(utterance_id=event.utterance_id, start_ms=samples_to_ms(event.start_samples))
        return message
    if isinstance(event, UtteranceStopped):
        message = _base("speech.stopped", session_id)
        message.update(
            utterance_id=event.utterance_id,
            start_ms=samples_to_ms(event.start_samples),
            end_ms=samples_to_ms(event.end_samples),
            reason=event.reason,
        )
        return message
    if isinstance(event, PartialText):
        message = _base("transcript.partial", session_id)
        message.update(
            utterance_id=event.utterance_id,
            text=event.text,
            stable_text=event.stable_text,
            start_ms=samples_to_ms(event.start_samples),
            end_ms=samples_to_ms(event.end_samples),
        )
        return message
    message = _base("transcript.final", session_id)
    message.update(
        utterance_id=event.utterance_id,
        text=event.text,
        start_ms=samples_to_ms(event.start_samples),
        end_ms=samples_to_ms(event.end_samples),
        language=event.language,
        reason=event.reason,
        backend=event.backend,
        prompt=event.prompt,
        inference_ms=round(event.inference_ms, 1),
    )
    if event.usage is not None:
        message["usage"] = event.usage.as_dict()
    if event.words:
        message["words"] = stream_words(event)
    if event.failover_reason:
        message["failover_reason"] = event.failover_reason
    if event.retried:
        message["retried"] = True
    if event.dropped:
        message["dropped"] = event.dropped
    return message


def stream_words(event: FinalText) -> list[dict[str, Any]]:
    """The final's words on the stream clock (the model times them from its audio's start)."""
    offset_ms = samples_to_ms(event.start_samples)
    return [
        {
            "word": word.word.strip(),
            "start_ms": offset_ms + round(word.start_s * 1000),
            "end_ms": offset_ms + round(word.end_s * 1000),
            "probability": round(word.probability, 4),
        }
        for word in event.words
    ]
