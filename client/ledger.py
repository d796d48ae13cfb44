"""What a streaming client must remember so that no word is lost and none is repeated, whatever
happens to the server. Sans-I/O: chunks and events in, decisions out.

The client keeps every audio chunk until it is final-safe: the server said so
(``input_audio.ack`` ``final_safe_seq``), or a final the client received covers it. Then:

    what happened                          what the client does
    -------------------------------------  ---------------------------------------------------
    connection dropped, server alive       resume the same session; send the chunks after the
                                           server's ``last_audio_seq``; missed finals replayed
    session gone (server killed, another   open a new session with the same options; send the
    server behind a load balancer:         chunks after the last final received (or after the
    ``resume_failed``)                     last final-safe one, if later)
    ``session.closed`` ``server_shutdown`` open a new session; send the chunks after the
    with audio still to say                closed session's ``last_audio_seq``

Each server session is an *epoch*. Events of later epochs are rewritten so that the caller
sees one stream: ``utterance_id`` continues the numbering, ``start_ms`` / ``end_ms`` count from
the first chunk the client ever sent. A final is passed on once, whatever the server resends.
Message numbers (``seq``) are global here; the server numbers each epoch from 1.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

BYTES_PER_SAMPLE = 2
_TIMED_FIELDS = ("start_ms", "end_ms")


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    data: bytes
    start_ms: float
    end_ms: float


class AudioLedger:
    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.chunks: deque[Chunk] = deque()  # sent or queued, not yet final-safe
        self.sent_ms = 0.0  # where the audio produced so far ends
        self.last_seq = 0
        self.epoch = 0
        self.epoch_first_seq = 1  # the global seq of this epoch's message 1
        self.epoch_offset_ms = 0.0  # where this epoch's stream time 0 lies
        self.last_final_id = 0  # this epoch's highest utterance id received (for a resume)
        self.duplicates = 0
        self._id_offset = 0
        self._max_utterance_id = 0
        self._finalized_ms = 0.0  # audio before this point is covered by received finals
        self._seen: set[tuple[int, int, bool]] = set()

    # ------------------------------------------------------------------ audio

    def add(self, data: bytes) -> Chunk:
        duration_ms = len(data) / BYTES_PER_SAMPLE / self.sample_rate_hz * 1000
        self.last_seq += 1
        chunk = Chunk(self.last_seq, data, self.sent_ms, self.sent_ms + duration_ms)
        self.sent_ms = chunk.end_ms
        self.chunks.append(chunk)
        return chunk

    def from_seq(self, seq: int) -> list[Chunk]:
        """The kept chunks from global ``seq`` on, in order."""
        return [chunk for chunk in self.chunks if chunk.seq >= seq]

    def global_seq(self, epoch_seq: int) -> int:
        return self.epoch_first_seq + epoch_seq - 1

    # ------------------------------------------------------------------ events

    def receive(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event as the caller should see it, or ``None`` for a final seen before."""
        kind = event.get("type")
        if kind == "input_audio.ack":
            # Servers before final_safe_seq only said what they processed.
            self._forget_through(self.global_seq(event.get("final_safe_seq", event["seq"])))
            return event
        event = self._rewritten(event)
        if kind == "transcript.final" or (kind == "error" and "utterance_id" in event):
            outcome = (self.epoch, event["utterance_id"], bool(event.get("retried")))
            if outcome in self._seen:
                self.duplicates += 1
                return None
            self._seen.add(outcome)
            self.last_final_id = max(self.last_final_id, event["utterance_id"] - self._id_offset)
            if kind == "transcript.final" and "end_ms" in event:
                self._finalized_ms = max(self._finalized_ms, event["end_ms"])
                self._forget_before(self._finalized_ms)
        return event

    def _rewritten(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.epoch == 0:
            if "utterance_id" in event:
                self._max_utterance_id = max(self._max_utterance_id, event["utterance_id"])
            return event
        event = dict(event)
        if "utterance_id" in event:
            event["utterance_id"] += self._id_offset
            self._max_utterance_id = max(self._max_utterance_id, event["utterance_id"])
        for field in _TIMED_FIELDS:
            if isinstance(event.get(field), int | float):
                event[field] = round(event[field] + self.epoch_offset_ms)
        return event

    # ------------------------------------------------------------------ epochs

    def start_epoch(self, *, after_seq: int | None = None) -> int:
        """The server lost the session (or closed it after ``after_seq``, global): the next
        session starts with the first chunk no received final covers. Returns its seq."""
        if after_seq is not None:
            self._forget_through(after_seq)
        self._forget_before(self._finalized_ms)
        if self.chunks and self.chunks[0].start_ms < self._finalized_ms:
            # The new session starts exactly where the last final ended: the tail of that
            # utterance, sent again, could be heard as a word of its own.
            self.chunks[0] = self._trimmed(self.chunks[0], self._finalized_ms)
        first = self.chunks[0] if self.chunks else None
        self.epoch += 1
        self.epoch_first_seq = first.seq if first else self.last_seq + 1
        self.epoch_offset_ms = first.start_ms if first else self.sent_ms
        self._id_offset = self._max_utterance_id
        self.last_final_id = 0
        return self.epoch_first_seq

    def _trimmed(self, chunk: Chunk, start_ms: float) -> Chunk:
        samples = int((start_ms - chunk.start_ms) * self.sample_rate_hz / 1000)
        skipped_ms = samples / self.sample_rate_hz * 1000
        data = chunk.data[samples * BYTES_PER_SAMPLE :]
        return Chunk(chunk.seq, data, chunk.start_ms + skipped_ms, chunk.end_ms)

    def _forget_through(self, seq: int) -> None:
        while self.chunks and self.chunks[0].seq <= seq:
            self.chunks.popleft()

    def _forget_before(self, position_ms: float) -> None:
        while self.chunks and self.chunks[0].end_ms <= position_ms:
            self.chunks.popleft()
