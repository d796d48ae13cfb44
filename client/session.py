"""A streaming session as a client runs it: audio chunks from any source go to the server, events
come back, and a dropped connection is resumed (docs/protocol.md, "Resuming a dropped
session").

Audio messages are numbered as they are sent and kept until the server acknowledges them
(``input_audio.ack``). While the connection is down the source keeps producing (a microphone
does not wait) and its chunks queue up; on reconnect the server says what it has, the rest goes
again in order, and the finals missed meanwhile arrive once. A final seen twice is dropped and
counted in ``duplicates`` (the server should send none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

BYTES_PER_SAMPLE = 2
# Refusals that a reconnect cannot fix.
FATAL_CODES = frozenset(
    {
        "missing_api_key",
        "invalid_api_key",
        "token_expired",
        "origin_not_allowed",
        "resume_failed",
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
        max_reconnects: int = 5,
    ) -> None:
        self.url = url
        self.chunks = chunks
        self.options = options
        self.on_event = on_event
        self.headers = headers or {}
        self.open_timeout_s = open_timeout_s
        self.max_reconnects = max_reconnects
        self.result = StreamResult()
        self.session_id: str | None = None
        self.resume_token: str | None = None
        self.last_final_id = 0
        self.sent_seq = 0
        self.pending: deque[tuple[int, bytes]] = deque()  # sent or queued, not acknowledged
        self.source_done = False
        self.closed = False
        self.refusal: dict[str, Any] | None = None
        self._websocket: Any = None
        self._ready = asyncio.Event()  # the server knows where we stand: audio may flow
        self._wake = asyncio.Event()  # new audio, or the source ended
        self._seen_outcomes: set[tuple[int, bool]] = set()

    async def run(self) -> StreamResult:
        reader = asyncio.create_task(self._read_source())
        try:
            await self._connections()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return self.result

    # ------------------------------------------------------------------ audio

    async def _read_source(self) -> None:
        async for chunk in self.chunks:
            if not self.result.started_at:
                self.result.started_at = time.monotonic()
            self.sent_seq += 1
            self.pending.append((self.sent_seq, chunk))
            self._wake.set()
        self.source_done = True
        self._wake.set()

    async def _send_loop(self, websocket: Any, first_seq: int) -> None:
        """Send what the server lacks, from ``first_seq`` on, then each chunk as it comes."""
        next_seq = first_seq
        close_sent = False
        while True:
            self._wake.clear()
            for seq, chunk in list(self.pending):
                if seq >= next_seq:
                    await websocket.send(chunk)
                    next_seq = seq + 1
            if self.source_done and not close_sent:
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
            except (websockets.ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
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

    def _target(self) -> str:
        if self.session_id is None:
            return with_query(self.url, self.options)
        return with_query(
            self.url,
            {
                "session_id": self.session_id,
                "resume_token": self.resume_token or "",
                "last_final_id": self.last_final_id,
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
                    event = json.loads(raw)
                    first_seq = self._receive(event)
                    if first_seq is not None:
                        sender = asyncio.create_task(self._send_loop(websocket, first_seq))
                    if self.closed or self.refusal is not None:
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
        """Record one event. Returns the first audio message to send once the server has said
        where it stands (session created or resumed), else None."""
        kind = event["type"]
        first_seq = None
        if kind == "session.created":
            self.session_id = event["session_id"]
            self.resume_token = event.get("resume_token")
            first_seq = 1
        elif kind == "session.resumed":
            first_seq = event["last_audio_seq"] + 1
        elif kind == "input_audio.ack":
            while self.pending and self.pending[0][0] <= event["seq"]:
                self.pending.popleft()
            return None
        elif kind == "error" and event.get("code") in FATAL_CODES:
            self.refusal = event
        if kind == "transcript.final" or (kind == "error" and "utterance_id" in event):
            outcome = (event["utterance_id"], bool(event.get("retried")))
            if outcome in self._seen_outcomes:
                self.result.duplicates += 1
                return first_seq
            self._seen_outcomes.add(outcome)
            self.last_final_id = max(self.last_final_id, event["utterance_id"])
        event["received_at"] = time.monotonic()
        self.result.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        if kind == "session.closed":
            self.closed = True
        return first_seq
