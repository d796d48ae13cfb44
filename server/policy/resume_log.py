"""What a session has told its client about each utterance (finals, and failures of finals),
kept so that a resume can replay what the client missed and a late viewer can catch up.

The last ``FINAL_LOG_SIZE`` utterances are kept, in the order their messages were last
written (a retried final replaces its failure and moves to the end).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

FINAL_LOG_SIZE = 1000

Message = dict[str, Any]


class FinalLog:
    def __init__(self, size: int = FINAL_LOG_SIZE) -> None:
        self.size = size
        self._by_utterance: OrderedDict[int, Message] = OrderedDict()

    def record(self, utterance_id: int, message: Message) -> None:
        self._by_utterance[utterance_id] = message
        self._by_utterance.move_to_end(utterance_id)
        while len(self._by_utterance) > self.size:
            self._by_utterance.popitem(last=False)

    def after(self, last_final_id: int) -> list[Message]:
        """What a client that has every utterance up to ``last_final_id`` has not seen."""
        return [
            message
            for utterance_id, message in self._by_utterance.items()
            if utterance_id > last_final_id
        ]

    def finals(self) -> list[Message]:
        """The finals so far (failures left out): what a late viewer is shown."""
        return [m for m in self._by_utterance.values() if m["type"] == "transcript.final"]
