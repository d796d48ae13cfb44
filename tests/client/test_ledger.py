"""No word lost, none repeated: the client's ledger against the sans-I/O server core, with
connections dropped and resumed, servers killed (and a new session opened) and drained, at
random moments, with random message sizes (hypothesis). All in process: the server here is the
real ``Session`` with the real final-safe accounting; only the network is simulated."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.ledger import AudioLedger
from server.core import protocol
from server.core.events import (
    Event,
    FinalText,
    RequestCancelled,
    SessionError,
)
from server.core.received_audio import ReceivedAudio
from server.core.transcription import RequestKind, Segment, TranscribeRequest, Transcription
from server.policy.resume_log import FinalLog
from tests.audio import RATE_HZ, pcm16, silence, tone
from tests.server.session_driver import energy_session

BASE_HZ, STEP_HZ = 300, 100


def word_of(audio: np.ndarray) -> str:
    """Each utterance is a tone; its frequency says which word it is."""
    if len(audio) < 160 or float(np.abs(audio).max()) < 0.05:
        return ""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    frequency = np.argmax(spectrum) * RATE_HZ / len(audio)
    return f"w{round((frequency - BASE_HZ) / STEP_HZ)}"


class SimServer:
    """One server session: the core, its accounting, and what it has not yet delivered."""

    def __init__(self) -> None:
        self.session = energy_session()
        self.received = ReceivedAudio()
        self.outbox: deque[dict[str, Any]] = deque()
        self.requests: deque[TranscribeRequest] = deque()
        self.cancelled: set[int] = set()
        self.log = FinalLog()
        self.closed_message: dict[str, Any] | None = None  # replayed to a resume, as it is

    def audio(self, data: bytes) -> None:
        if self.session.closing:
            return  # drained: the live session reads no more input, and counts none
        self.received.number()
        self.handle(self.session.receive_audio(data))
        self.received.receive(len(data) / 2 / RATE_HZ)

    def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TranscribeRequest):
                self.requests.append(event)
            elif isinstance(event, RequestCancelled):
                self.cancelled.add(event.request_id)
            elif isinstance(event, FinalText | SessionError):
                message = protocol.event_message("s", event)
                if event.utterance_id is not None:
                    self.log.record(event.utterance_id, message)
                self.outbox.append(message)

    def answer(self, count: int) -> None:
        for _ in range(min(count, len(self.requests))):
            request = self.requests.popleft()
            if request.request_id in self.cancelled:
                continue
            text = word_of(request.audio) if request.kind is RequestKind.FINAL else ""
            answer = Transcription(segments=(Segment(text=text),) if text else ())
            self.handle(self.session.receive_transcription(request, answer))

    def ack(self) -> None:
        safe = self.received.advance(self.session.final_safe_samples)
        self.outbox.append(protocol.audio_ack("s", self.received.count, safe))

    def drain(self) -> None:
        self.handle(self.session.receive_end_of_stream())
        while self.requests:
            self.answer(len(self.requests))
        self.closed_message = protocol.session_closed("s", "server_shutdown", self.received.count)
        self.outbox.append(self.closed_message)

    @property
    def idle(self) -> bool:
        return self.session.pending_utterances == 0


class SimClient:
    def __init__(self) -> None:
        self.ledger = AudioLedger(RATE_HZ)
        self.server = SimServer()
        self.connected = True
        self.words: list[str] = []

    def send(self, data: bytes) -> None:
        self.ledger.add(data)
        if self.connected:
            self.server.audio(data)

    def deliver(self, count: int) -> None:
        for _ in range(count):
            if not self.connected or not self.server.outbox:
                return
            self.receive(self.server.outbox.popleft())  # may open a new session

    def receive(self, message: dict[str, Any]) -> None:
        if message["type"] == "session.closed":
            after = self.ledger.global_seq(message["last_audio_seq"])
            self.reopen(self.ledger.start_epoch(after_seq=after))
            return
        seen = self.ledger.receive(message)
        if seen is not None and seen["type"] == "transcript.final" and seen["text"]:
            self.words.append(seen["text"].strip())

    def drop(self) -> None:
        """The connection drops: what was on its way is lost; the server keeps the session."""
        self.connected = False
        self.server.outbox.clear()

    def resume(self) -> None:
        self.connected = True
        for message in self.server.log.after(self.ledger.last_final_id):
            self.receive(message)
        if self.server.closed_message is not None:  # it drained while the client was away
            self.receive(self.server.closed_message)
            return
        for chunk in self.ledger.from_seq(self.ledger.global_seq(self.server.received.count + 1)):
            self.server.audio(chunk.data)

    def kill(self) -> None:
        """The server dies: everything it had is gone; a new session takes over."""
        self.reopen(self.ledger.start_epoch())

    def reopen(self, first_seq: int) -> None:
        self.server = SimServer()
        self.connected = True
        for chunk in self.ledger.from_seq(first_seq):
            self.server.audio(chunk.data)


def quiet(pcm: bytes, offset: int) -> bool:
    """The last 400 ms sent were silence: no utterance, not even a candidate, is under way."""
    tail = pcm[max(0, offset - RATE_HZ * 2 * 400 // 1000) : offset]
    return not any(tail)


ACTIONS = st.sampled_from(["deliver", "answer", "ack", "drop", "resume", "kill", "drain", "none"])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    utterances=st.lists(
        st.tuples(st.integers(700, 1500), st.integers(400, 1400)), min_size=2, max_size=6
    ),
    data=st.data(),
)
def test_every_utterance_reaches_the_client_exactly_once(utterances, data):
    parts = []
    for index, (gap_ms, speech_ms) in enumerate(utterances):
        parts += [silence(gap_ms), tone(speech_ms, BASE_HZ + STEP_HZ * index)]
    pcm = pcm16(np.concatenate([*parts, silence(1500)]))
    client = SimClient()
    offset = 0
    while offset < len(pcm):
        size = data.draw(st.integers(1, 250)) * 64  # 2 ms to 1 s, whole samples
        client.send(pcm[offset : offset + size])
        offset += size
        action = data.draw(ACTIONS)
        count = data.draw(st.integers(1, 4))
        if action == "deliver":
            client.deliver(count)
        elif action == "answer":
            client.server.answer(count)
        elif action == "ack" and client.connected:
            client.server.ack()
        elif action == "drop" and client.connected:
            client.drop()
        elif action == "resume" and not client.connected:
            client.resume()
        elif action == "kill":
            client.kill()
        elif action == "drain" and client.connected and quiet(pcm, offset) and client.server.idle:
            client.server.drain()  # not in the middle of a word: a drain would cut it in two
    if not client.connected:
        client.resume()
    while True:  # the client's stream ends: the session it is on finishes
        server = client.server
        if not server.session.closing:
            server.handle(server.session.receive_end_of_stream())
        while server.requests:
            server.answer(len(server.requests))
        client.deliver(len(server.outbox) + 1)  # a drained session's close opens a new one
        if client.server is server and not server.outbox:
            break
    assert client.words == [f"w{index}" for index in range(len(utterances))]
