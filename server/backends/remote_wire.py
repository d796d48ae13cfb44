"""The wire side of the remote backend, without I/O: the request form, WAV encoding, and the
mapping of OpenAI-shaped answers (json, verbose_json, Server-Sent Events) and errors onto
StreamScribe's types. Every message that may reach a log or a client passes ``redact``."""

from __future__ import annotations

import email.utils
import io
import json
import re
import time
import wave
from dataclasses import replace
from typing import Any

import numpy as np

from server.core.errors import RemoteError
from server.core.languages import LANGUAGE_NAMES
from server.core.transcription import DecodeOptions, Samples, Segment, Usage, Word
from server.core.units import STREAM_RATE_HZ

_CODES_BY_NAME = {name: code for code, name in LANGUAGE_NAMES.items()}
# OpenAI's own error messages quote a masked key ("sk-abc***xyz"); quote none of it.
_KEY_LIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{4,}")
_MAX_MESSAGE_CHARS = 300


def encode_wav(audio: Samples) -> bytes:
    """16 kHz mono PCM16 WAV, in memory."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(STREAM_RATE_HZ)
        writer.writeframes(pcm)
    return buffer.getvalue()


def richest_format(model: str) -> str:
    """gpt-4o transcription models answer only json (or text); the others give verbose_json."""
    return "json" if model.startswith("gpt-4o") else "verbose_json"


def streams_deltas(model: str) -> bool:
    """Only the gpt-4o models send real deltas; whisper-1 ignores ``stream``."""
    return model.startswith("gpt-4o")


def form_fields(
    model: str, options: DecodeOptions, response_format: str, *, stream: bool
) -> list[tuple[str, str]]:
    fields = [("model", model), ("response_format", response_format)]
    if options.task != "translate" and options.language:
        fields.append(("language", options.language))
    # The API has no keywords field for these models: they lead the prompt, as a glossary.
    prompt = " ".join(part for part in (options.hotwords, options.prompt) if part)
    if prompt:
        fields.append(("prompt", prompt))
    fields.append(("temperature", f"{options.temperature:g}"))
    if response_format == "verbose_json":
        fields.append(("timestamp_granularities[]", "segment"))
        if options.word_timestamps:
            fields.append(("timestamp_granularities[]", "word"))
    if stream:
        fields.append(("stream", "true"))
    return fields


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    text = _KEY_LIKE.sub(r"\1-***", text)
    return text[:_MAX_MESSAGE_CHARS]


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(
    status: int, body: bytes, headers: Any, secret: str | None, model: str
) -> RemoteError:
    """Map a non-2xx answer. The caller's mistakes are not retried; 401/403/404 mean the remote
    is unusable as configured, so they open the circuit at once instead of storming it."""
    detail = redact(_error_message(body), secret)
    if status == 429:
        return RemoteError(
            f"remote is rate limiting (429): {detail}",
            status=status,
            retry_after_s=retry_after_s(headers.get("retry-after")),
        )
    if status in (408, 409) or status >= 500:
        return RemoteError(
            f"remote failed ({status}): {detail}",
            status=status,
            retry_after_s=retry_after_s(headers.get("retry-after")),
        )
    if status in (401, 403):
        return RemoteError(
            f"remote refused the API key ({status}): {detail}",
            status=status,
            retryable=False,
            trips=True,
        )
    if status == 404:
        return RemoteError(
            f"remote does not serve model {model!r} or the URL is wrong (404): {detail}",
            status=status,
            retryable=False,
            trips=True,
        )
    return RemoteError(
        f"remote refused the request ({status}): {detail}", status=status, retryable=False
    )


def _error_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip() or "no details"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if parsed.get("detail"):
            return str(parsed["detail"])
    return json.dumps(parsed)[:_MAX_MESSAGE_CHARS]


def malformed(reason: str) -> RemoteError:
    return RemoteError(f"remote sent a malformed answer: {reason}")


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise malformed(f"not JSON ({exc})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
        raise malformed("no 'text' field")
    return parsed


def parse_answer(
    parsed: dict[str, Any], duration_s: float
) -> tuple[tuple[Segment, ...], str | None, Usage]:
    """Segments, language code and usage from a json or verbose_json answer."""
    language = _language_code(parsed.get("language"))
    usage = parse_usage(parsed.get("usage"), duration_s)
    raw_segments = parsed.get("segments")
    if not isinstance(raw_segments, list) or not raw_segments:
        text = parsed["text"].strip()
        only: tuple[Segment, ...] = (Segment(text=" " + text, end_s=duration_s),) if text else ()
        return only, language, usage
    try:
        segments = tuple(_segment(raw) for raw in raw_segments)
        words = tuple(_word(raw) for raw in parsed.get("words") or ())
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed(f"bad segment ({exc})") from None
    return _attach_words(segments, words), language, usage


def parse_usage(raw: Any, duration_s: float) -> Usage:
    if isinstance(raw, dict) and raw.get("type") == "tokens":
        return Usage(
            audio_seconds=duration_s,
            input_tokens=_int_or_none(raw.get("input_tokens")),
            output_tokens=_int_or_none(raw.get("output_tokens")),
        )
    return Usage(audio_seconds=duration_s)


def sse_event(line: str) -> dict[str, Any] | None:
    """The JSON object of one Server-Sent Events line, or None for anything but ``data:``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise malformed(f"bad event in stream ({exc})") from None
    return event if isinstance(event, dict) else None


def _segment(raw: dict[str, Any]) -> Segment:
    return Segment(
        text=str(raw["text"]),
        start_s=float(raw.get("start", 0.0)),
        end_s=float(raw.get("end", 0.0)),
        avg_logprob=float(raw.get("avg_logprob", 0.0)),
        no_speech_prob=float(raw.get("no_speech_prob", 0.0)),
        compression_ratio=float(raw.get("compression_ratio", 1.0)),
        temperature=float(raw.get("temperature", 0.0)),
        seek=int(raw.get("seek", 0)),
        tokens=tuple(int(token) for token in raw.get("tokens") or ()),
    )


def _word(raw: dict[str, Any]) -> Word:
    return Word(str(raw["word"]), float(raw["start"]), float(raw["end"]))


def _attach_words(segments: tuple[Segment, ...], words: tuple[Word, ...]) -> tuple[Segment, ...]:
    """verbose_json lists words for the whole file; give each segment the words it holds."""
    if not words:
        return segments
    attached = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        inside = tuple(
            word
            for word in words
            if word.start_s >= segment.start_s and (last or word.start_s < segment.end_s)
        )
        attached.append(replace(segment, words=inside))
    return tuple(attached)


def _language_code(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    value = value.lower()
    return value if value in LANGUAGE_NAMES else _CODES_BY_NAME.get(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None
