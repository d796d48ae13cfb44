"""Stream an audio file to a StreamScribe server and show the transcript as it arrives.

Partials overwrite one line (on a terminal); finals are printed line by line. ``--json`` prints
every server event as one JSON line instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from client.session import (
    ResumableSession,
    SessionFailed,
    StreamResult,
    paced_chunks,
    with_query,
)
from client.sources import SourceError, decode_file

__all__ = ["StreamResult", "stream_pcm", "with_query"]


async def stream_pcm(
    url: str,
    pcm: bytes,
    *,
    sample_rate_hz: int = 16_000,
    speed: float | None = 1.0,
    chunk_ms: int = 100,
    options: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    open_timeout_s: float = 30.0,
    headers: dict[str, str] | None = None,
    max_reconnects: int = 8,
) -> StreamResult:
    """Send PCM16 mono audio at ``speed`` times real time (None: as fast as the server reads),
    then ``session.close``; return every event up to ``session.closed``. A dropped connection
    is resumed, and a session the server lost is replaced by a new one, with no word lost
    (up to ``max_reconnects`` failed connection attempts in a row)."""
    session = ResumableSession(
        url,
        paced_chunks(pcm, sample_rate_hz=sample_rate_hz, chunk_ms=chunk_ms, speed=speed),
        options={"sample_rate": sample_rate_hz, **(options or {})},
        on_event=on_event,
        headers=headers,
        open_timeout_s=open_timeout_s,
        max_reconnects=max_reconnects,
    )
    return await session.run()


class TerminalView:
    """Partials rewrite the current line on a terminal; finals become lines of their own."""

    def __init__(self, out: TextIO, err: TextIO, as_json: bool) -> None:
        self.out = out
        self.err = err
        self.as_json = as_json
        self.interactive = out.isatty()
        self._partial_shown = False

    def __call__(self, event: dict[str, Any]) -> None:
        if self.as_json:
            shown = {key: value for key, value in event.items() if key != "received_at"}
            print(json.dumps(shown, ensure_ascii=False), file=self.out, flush=True)
            return
        kind = event["type"]
        if kind == "transcript.partial" and self.interactive:
            self.out.write("\r\x1b[2K\x1b[2m" + event["text"] + "\x1b[0m")
            self.out.flush()
            self._partial_shown = True
        elif kind == "transcript.final":
            if self._partial_shown:
                self.out.write("\r\x1b[2K")
                self._partial_shown = False
            if event["text"]:
                print(event["text"], file=self.out, flush=True)
        elif kind == "error":
            print(f"error [{event['code']}]: {event['message']}", file=self.err, flush=True)
        elif kind in ("session.degraded", "session.recovered"):
            print(f"server load: partials {event['partials']}", file=self.err, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="audio file (any format FFmpeg reads)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="server websocket")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")
    pace.add_argument(
        "--fast", action="store_true", help="send as fast as the server takes the audio"
    )
    parser.add_argument("--sample-rate", type=int, default=16_000, help="rate to send at")
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per message")
    parser.add_argument("--language", help="ISO-639-1 code (default: detect)")
    parser.add_argument("--prompt", help="static prompt or glossary")
    parser.add_argument("--vad", choices=("webrtc", "silero"))
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line")
    parser.add_argument(
        "--max-reconnects",
        type=int,
        default=8,
        help="connection attempts in a row before giving up on a lost server (default 8, "
        "about 30 s)",
    )
    parser.set_defaults(run=run)


def auth_headers() -> dict[str, str]:
    """The API key from ``STREAMSCRIBE_API_KEY`` (never a flag: other users see flags)."""
    key = os.environ.get("STREAMSCRIBE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def run(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print("streamscribe stream: --speed must be positive", file=sys.stderr)
        return 2
    try:
        pcm = decode_file(args.file, args.sample_rate)
    except SourceError as exc:
        print(f"streamscribe stream: {exc}", file=sys.stderr)
        return 2
    options = {
        key: value
        for key, value in (("language", args.language), ("prompt", args.prompt), ("vad", args.vad))
        if value
    }
    view = TerminalView(sys.stdout, sys.stderr, args.json)
    try:
        result = asyncio.run(
            stream_pcm(
                args.url,
                pcm,
                sample_rate_hz=args.sample_rate,
                speed=None if args.fast else args.speed,
                chunk_ms=args.chunk_ms,
                options=options,
                on_event=view,
                headers=auth_headers(),
                max_reconnects=args.max_reconnects,
            )
        )
    except SessionFailed as exc:
        print(f"streamscribe stream: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError) as exc:
        print(f"streamscribe stream: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # websockets' InvalidURI, InvalidHandshake, ConnectionClosed...
        print(f"streamscribe stream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    closed = result.of_type("session.closed")
    return 0 if closed and not result.of_type("error") else 1
