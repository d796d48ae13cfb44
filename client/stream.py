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
    reconnects: int = 0  # connections lost and resumed
    duplicates: int = 0  # finals received twice (dropped; the server should send none)

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
    headers: dict[str, str] | None = None,
    max_reconnects: int = 5,
) -> StreamResult:
    """Send PCM16 mono audio at ``speed`` times real time (None: as fast as the server reads),
    then ``session.close``; return every event up to ``session.closed``.

    If the connection drops, reconnect (up to ``max_reconnects`` times) and resume the session:
    the server says which audio messages it has, the rest is sent again, and the finals missed
    meanwhile arrive once (a final seen twice is dropped and counted in ``duplicates``).
    """
    stream = _ResumableStream(
        url,
        pcm,
        sample_rate_hz=sample_rate_hz,
        speed=speed,
        chunk_ms=chunk_ms,
        options=options or {},
        on_event=on_event,
        open_timeout_s=open_timeout_s,
        headers=headers or {},
    )
    return await stream.run(max_reconnects)


class _ResumableStream:
    def __init__(
        self,
        url: str,
        pcm: bytes,
        *,
        sample_rate_hz: int,
        speed: float | None,
        chunk_ms: int,
        options: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None,
        open_timeout_s: float,
        headers: dict[str, str],
    ) -> None:
        chunk_bytes = max(sample_rate_hz * chunk_ms // 1000, 1) * BYTES_PER_SAMPLE
        # Message n (1-based) is chunks[n - 1]: the server counts audio messages the same way.
        self.chunks = [
            pcm[offset : offset + chunk_bytes] for offset in range(0, len(pcm), chunk_bytes)
        ]
        self.url = url
        self.sample_rate_hz = sample_rate_hz
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.options = options
        self.on_event = on_event
        self.open_timeout_s = open_timeout_s
        self.headers = headers
        self.result = StreamResult()
        self.session_id: str | None = None
        self.resume_token: str | None = None
        self.last_final_id = 0
        self.next_message = 0  # index into chunks of the next message to send
        self.closed = False
        self._seen_outcomes: set[tuple[int, bool]] = set()

    async def run(self, max_reconnects: int) -> StreamResult:
        import websockets

        attempt = 0
        while True:
            try:
                await self._connection()
                return self.result
            except (websockets.ConnectionClosedError, OSError):
                if self.closed or self.session_id is None or attempt >= max_reconnects:
                    raise
                attempt += 1
                self.result.reconnects += 1
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))

    def _target(self) -> str:
        if self.session_id is None:
            return with_query(self.url, {"sample_rate": self.sample_rate_hz, **self.options})
        return with_query(
            self.url,
            {
                "session_id": self.session_id,
                "resume_token": self.resume_token or "",
                "last_final_id": self.last_final_id,
            },
        )

    async def _connection(self) -> None:
        import websockets

        resuming = self.session_id is not None
        async with websockets.connect(
            self._target(),
            open_timeout=self.open_timeout_s,
            max_size=None,
            ping_interval=None,
            additional_headers=self.headers,
        ) as websocket:
            if resuming:
                # Until the server says where it stands, nothing is sent.
                self._receive(json.loads(await websocket.recv()))
            receiver = asyncio.create_task(self._receive_all(websocket))
            if not self.result.started_at:
                self.result.started_at = time.monotonic()
            try:
                await self._send_audio(websocket, receiver)
                await receiver
            finally:
                receiver.cancel()

    async def _send_audio(self, websocket: Any, receiver: asyncio.Task[None]) -> None:
        while self.next_message < len(self.chunks) and not receiver.done():
            if self.speed:
                due = self.result.started_at + self.next_message * self.chunk_ms / 1000 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await websocket.send(self.chunks[self.next_message])
            self.next_message += 1
        if not receiver.done():
            await websocket.send(json.dumps({"type": "session.close"}))

    async def _receive_all(self, websocket: Any) -> None:
        async for raw in websocket:
            if self._receive(json.loads(raw)):
                return

    def _receive(self, event: dict[str, Any]) -> bool:
        """Record one event; True once the session is closed."""
        kind = event["type"]
        if kind == "session.created":
            self.session_id = event["session_id"]
            self.resume_token = event.get("resume_token")
        elif kind == "session.resumed":
            # Everything after what the server processed goes again.
            self.next_message = min(self.next_message, event["last_audio_seq"])
        elif kind == "error" and event.get("code") == "resume_failed":
            self.closed = True  # nothing to resume: give up rather than start over silently
        if kind == "transcript.final" or (kind == "error" and "utterance_id" in event):
            outcome = (event["utterance_id"], bool(event.get("retried")))
            if outcome in self._seen_outcomes:
                self.result.duplicates += 1
                return False
            self._seen_outcomes.add(outcome)
            self.last_final_id = max(self.last_final_id, event["utterance_id"])
        event["received_at"] = time.monotonic()
        self.result.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        if kind == "session.closed":
            self.closed = True
            return True
        return False


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
    parser.add_argument(
        "--max-reconnects",
        type=int,
        default=5,
        help="times to reconnect and resume the session after a dropped connection",
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
    except (OSError, asyncio.TimeoutError) as exc:
        print(f"streamscribe stream: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # websockets' InvalidURI, InvalidHandshake, ConnectionClosed...
        print(f"streamscribe stream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    closed = result.of_type("session.closed")
    return 0 if closed and not result.of_type("error") else 1
