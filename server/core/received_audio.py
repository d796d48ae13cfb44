"""Which of a client's audio messages are final-safe: every final that needs their audio has
been sent, so a client may forget them and a server that dies loses none of their words.

A message is final-safe once the stream position where it ends lies before
``Session.final_safe_samples``: before the start of the oldest utterance whose final is not yet
sent, and before any audio a coming utterance could still take as its pre-roll. Messages are
numbered 1, 2, 3... as the live session counts them (a refused one takes its number and no
audio). Positions are 16 kHz samples of stream time.
"""

from __future__ import annotations

from collections import deque

from server.core.units import STREAM_RATE_HZ


class ReceivedAudio:
    def __init__(self) -> None:
        self.count = 0  # messages numbered so far
        self.stream_samples = 0.0  # where the last message ends, in stream samples
        self.final_safe_seq = 0
        self._ends: deque[tuple[int, float]] = deque()  # (seq, end), not yet final-safe

    def number(self) -> int:
        """Number the next message; its audio, if accepted, is added by ``receive``."""
        self.count += 1
        self._ends.append((self.count, self.stream_samples))
        return self.count

    def receive(self, seconds: float) -> None:
        """The message just numbered held ``seconds`` of audio."""
        self.stream_samples += seconds * STREAM_RATE_HZ
        seq, _ = self._ends.pop()
        self._ends.append((seq, self.stream_samples))

    def advance(self, final_safe_samples: int) -> int:
        """Move ``final_safe_seq`` past every message that ends by ``final_safe_samples``."""
        while self._ends and self._ends[0][1] <= final_safe_samples:
            self.final_safe_seq = self._ends.popleft()[0]
        return self.final_safe_seq
