"""A streaming session as a client runs it: audio chunks from any source go to the server, events
come back, and neither a dropped connection nor a dead server loses a word (docs/protocol.md,
"Resuming a dropped session" and "When the server is gone").

Audio messages are numbered as they are sent and kept until they are final-safe
(``client.ledger``). While the connection is down the source keeps producing (a microphone
does not wait) and its chunks queue up. On reconnect the session is resumed when the server
still has it; when it does not (the server was killed or restarted, or a load balancer sent the
client to another server), or when it closed the session for a shutdown, a new session with
the same options takes over from the last final received. The caller sees one stream: finals
once each, utterance ids and times continuing. A final seen twice is dropped and counted in
``duplicates``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from client.ledger import AudioLedger

BYTES_PER_SAMPLE = 2
# Refusals that a reconnect cannot fix.
FATAL_CODES = frozenset(
    {
        "missing_api_key",
        "invalid_api_key",
        "token_expired",
        "origin_not_allowed",
        "invalid_session",
        "unsupported_sample_rate",
        "model_not_found",
        "too_many_sessions",
        "audio_rate_exceeded",
    }
)


class SessionFailed(Exception):
    """The server refused the session, or the connection could not be restored."""


@dataclass
class StreamResult:
    """What a streaming run saw: every event, stamped with the client's clock."""

    events: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0  # monotonic time when the first audio byte was sent
    reconnects: int = 0  # connections lost and resumed
    new_sessions: int = 0  # sessions opened again because the server lost the old one
    duplicates: int = 0  # finals received twice (dropped)

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


async def paced_chunks(
    pcm: bytes, *, sample_rate_hz: int, chunk_ms: int, speed: float | None
) -> AsyncIterator[bytes]:
    """A file's audio in ``chunk_ms`` pieces at ``speed`` times real time (None: at once)."""
    chunk_bytes = max(sample_rate_hz * chunk_ms // 1000, 1) * BYTES_PER_SAMPLE
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), chunk_bytes)):
        if speed:
            delay = started + index * chunk_ms / 1000 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield pcm[offset : offset + chunk_bytes]


class ResumableSession:
    def __init__(
        self,
        url: str,
        chunks: AsyncIterator[bytes],
        *,
        options: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None = None,
        headers: dict[str, str] | None = None,
        open_timeout_s: float = 30.0,
        max_reconnects: int = 8,
    ) -> None:
        self.url = url
        self.chunks = chunks
        self.options = options
        self.on_event = on_event
        self.headers = headers or {}
        self.open_timeout_s = open_timeout_s
        self.max_reconnects = max_reconnects
        self.result = StreamResult()
        self.ledger = AudioLedger(int(options.get("sample_rate", 16_000)))
        self.session_id: str | None = None
        self.resume_token: str | None = None
        self.source_done = False
        self.closed = False
        self.refusal: dict[str, Any] | None = None
        self._resumable = False  # a session exists that a reconnect may resume
        self._wake = asyncio.Event()  # new audio, or the source ended

    async def run(self) -> StreamResult:
        reader = asyncio.create_task(self._read_source())
        try:
            await self._connections()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self.result.duplicates = self.ledger.duplicates
        return self.result

    # ------------------------------------------------------------------ audio

    async def _read_source(self) -> None:
        async for chunk in self.chunks:
            if not self.result.started_at:
                self.result.started_at = time.monotonic()
            self.ledger.add(chunk)
            self._wake.set()
        self.source_done = True
        self._wake.set()

    async def _send_loop(self, websocket: Any, first_seq: int) -> None:
        """Send what the server lacks, from global ``first_seq`` on, then each chunk as it
        comes, then ``session.close`` once the source has ended."""
        next_seq = first_seq
        close_sent = False
        while True:
            self._wake.clear()
            for chunk in self.ledger.from_seq(next_seq):
                await websocket.send(chunk.data)
                next_seq = chunk.seq + 1
            if self.source_done and not close_sent and next_seq > self.ledger.last_seq:
                await websocket.send(json.dumps({"type": "session.close"}))
                close_sent = True
            await self._wake.wait()

    # ------------------------------------------------------------------ connections

    async def _connections(self) -> None:
        import websockets

        attempt = 0
        while True:
            try:
                await self._connection()
            except (TimeoutError, websockets.ConnectionClosed, OSError) as exc:
                if self.closed:
                    return
                if self.refusal is not None:
                    raise SessionFailed(
                        f"{self.refusal['code']}: {self.refusal['message']}"
                    ) from None
                if self.session_id is None:
                    raise SessionFailed(f"cannot reach {self.url}: {exc}") from exc
                if attempt >= self.max_reconnects:
                    raise SessionFailed(f"connection lost and not restored: {exc}") from exc
                attempt += 1
                self.result.reconnects += 1
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            if self.closed:
                return
            if self.refusal is not None:
                raise SessionFailed(f"{self.refusal['code']}: {self.refusal['message']}")
            attempt = 0  # the server ended that session on purpose: a new one starts now

    def _target(self) -> str:
        if not self._resumable:
            return with_query(self.url, self.options)
        return with_query(
            self.url,
            {
                "session_id": self.session_id or "",
                "resume_token": self.resume_token or "",
                "last_final_id": self.ledger.last_final_id,
                **({"token": self.options["token"]} if "token" in self.options else {}),
            },
        )

    async def _connection(self) -> None:
        import websockets

        async with websockets.connect(
            self._target(),
            open_timeout=self.open_timeout_s,
            max_size=None,
            additional_headers=self.headers,
        ) as websocket:
            sender: asyncio.Task[None] | None = None
            try:
                async for raw in websocket:
                    first_seq = self._receive(json.loads(raw))
                    if first_seq is not None:
                        sender = asyncio.create_task(self._send_loop(websocket, first_seq))
                    if self.closed or self.refusal is not None or not self._resumable:
                        return
                    if sender is not None and sender.done():
                        sender.result()  # a send failed: the connection is going down
            finally:
                if sender is not None:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
            raise websockets.ConnectionClosedError(None, None)

    def _receive(self, event: dict[str, Any]) -> int | None:
        """Record one event. Returns the first audio message (global seq) to send once the
        server has said where it stands (session created or resumed), else None."""
        kind = event["type"]
        first_seq = None
        if kind == "session.created":
            if self.session_id is not None:
                event = {**event, "continues": self.session_id}
            self.session_id = event["session_id"]
            self.resume_token = event.get("resume_token")
            self._resumable = True
            first_seq = self.ledger.epoch_first_seq
        elif kind == "session.resumed":
            first_seq = self.ledger.global_seq(event["last_audio_seq"] + 1)
        elif kind == "error" and event.get("code") == "resume_failed":
            self._lose_session()  # the server no longer has it: a new session takes over
            return None
        elif kind == "error" and event.get("code") in FATAL_CODES:
            self.refusal = event
        elif (
            kind == "session.closed"
            and event.get("reason") == "server_shutdown"
            and self._more_to_say(event)
        ):
            self._lose_session(after_seq=self.ledger.global_seq(event["last_audio_seq"]))
            return None
        seen = self.ledger.receive(event)
        if seen is None:
            return first_seq
        seen["received_at"] = time.monotonic()
        self.result.events.append(seen)
        if self.on_event is not None:
            self.on_event(seen)
        if kind == "session.closed":
            self.closed = True
        return first_seq

    def _more_to_say(self, closed: dict[str, Any]) -> bool:
        """Whether audio remains after what the closed session transcribed."""
        last = self.ledger.global_seq(closed.get("last_audio_seq", 0))
        return not self.source_done or last < self.ledger.last_seq

    def _lose_session(self, *, after_seq: int | None = None) -> None:
        self._resumable = False
        self.ledger.start_epoch(after_seq=after_seq)
        self.result.new_sessions += 1
