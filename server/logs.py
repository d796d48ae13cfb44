"""Logging set-up: human-readable lines, or one JSON object per line for log collectors.

Records carry the session id (``extra={"session_id": ...}``, which a live session adds to every
line it logs). No credential, prompt or transcript reaches the output, at any level: the server
never logs text, and every record, uvicorn's included (its access lines and websocket accepts
carry query strings such as ``?token=``, ``?resume_token=`` or ``?prompt=``), passes
``Redactor`` before it is written.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

REDACTED = "[redacted]"
# Every value of a query string (a URL's, or uvicorn's request line): tokens, prompts, ids.
_QUERY_VALUE = re.compile(r"([?&][^=&\s\"'#]+=)[^&\s\"'#]*")
# Credentials wherever they appear: bearer headers, our tokens, OpenAI-style keys.
_CREDENTIAL = re.compile(r"(?i)(bearer\s+)\S+|\bsst_[\w.\-]+|\bsk-[\w\-]{8,}")
# The websockets library's debug lines show each frame's payload ("< TEXT '{...}' [71 bytes]"):
# session updates with prompts in, transcripts out. The kind and the size stay.
_FRAME = re.compile(
    r"^([<>] (?:TEXT|BINARY|CONT|CONTINUATION|PING|PONG|CLOSE)) .*?(\[\d+ bytes?\])?$"
)


def redact(text: str) -> str:
    """``text`` with every query value, frame payload and credential-shaped string replaced."""
    text = _FRAME.sub(lambda m: f"{m.group(1)} {REDACTED} {m.group(2) or ''}".rstrip(), text)
    text = _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _CREDENTIAL.sub(lambda m: (m.group(1) or "") + REDACTED, text)


class Redactor(logging.Filter):
    """Rewrites each record's message (and exception text) through ``redact``; installed on
    every handler, so no logger, ours or a library's, can bypass it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(Redactor())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # faster-whisper and httpx log every call at INFO; one line per partial drowns the rest.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def uvicorn_log_config() -> dict[str, Any]:
    """Route uvicorn's own loggers through the root handler, so they share its format and its
    ``Redactor`` (uvicorn's own handlers would write query strings as they are)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
