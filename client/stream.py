"""Stream an audio file to a StreamScribe server and show the transcript as it arrives.

Partials overwrite one line (on a terminal); finals are printed line by line. ``--json`` prints
every server event as one JSON line instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit, urlunsplit

from client.sources import SourceError, decode_file

BYTES_PER_SAMPLE = 2


@dataclass
class StreamResult:
    """What a streaming run saw: every event, stamped with the client's clock."""

    events: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0  # monotonic time when the first audio byte was sent

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return self.of_type("transcript.final")

    @property
    def text(self) -> str:
        return " ".join(event["text"] for event in self.finals if event["text"])


def with_query(url: str, options: dict[str, Any]) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(options)]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/v1/stream", query, ""))


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
) -> StreamResult:
    """Send PCM16 mono audio at ``speed`` times real time (None: as fast as the server reads),
    then ``session.close``; return every event up to ``session.closed``."""
    import websockets

    result = StreamResult()
    chunk_bytes = max(sample_rate_hz * chunk_ms // 1000, 1) * BYTES_PER_SAMPLE
    target = with_query(url, {"sample_rate": sample_rate_hz, **(options or {})})
    async with websockets.connect(
        target, open_timeout=open_timeout_s, max_size=None, ping_interval=None
    ) as websocket:

        async def receive() -> None:
            async for raw in websocket:
                event = json.loads(raw)
                event["received_at"] = time.monotonic()
                result.events.append(event)
                if on_event is not None:
                    on_event(event)
                if event["type"] == "session.closed":
                    return

        receiver = asyncio.create_task(receive())
        result.started_at = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), chunk_bytes)):
            if receiver.done():
                break
            if speed:
                due = result.started_at + index * chunk_ms / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await websocket.send(pcm[offset : offset + chunk_bytes])
        if not receiver.done():
            await websocket.send(json.dumps({"type": "session.close"}))
        await receiver
    return result


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
    parser.set_defaults(run=run)


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
            )
        )
    except (OSError, asyncio.TimeoutError) as exc:
        print(f"streamscribe stream: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # websockets' InvalidURI, InvalidHandshake, ConnectionClosed...
        print(f"streamscribe stream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    closed = result.of_type("session.closed")
    return 0 if closed and not result.of_type("error") else 1
