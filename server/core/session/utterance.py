"""One utterance's life in a session, as a state and a transition table.

    state      event    next       when
    ---------  -------  ---------  ----------------------------------------------------------
    SPEAKING   PAUSE    PAUSED     silence after speech: a speculative final may be asked for
    PAUSED     RESUME   SPEAKING   speech again: the speculative final is cancelled
    PAUSED     ANSWER   PAUSED     the speculative final's answer (or failure) is kept, unused
    PAUSED     FAIL     PAUSED       until speech ends where it said, or resumes
    SPEAKING   END      ENDED      speech ended (silence window, max duration, commit, close)
    PAUSED     END      ENDED
    ENDED      ANSWER   ANSWERED   the final's answer is in
    ENDED      FAIL     ANSWERED   the final failed: its failure is the outcome
    ANSWERED   EMIT     DONE       every earlier utterance is done: FinalText (or SessionError)
    SPEAKING   CLEAR    CLEARED    the client discarded the audio (OpenAI's input_audio_buffer
    PAUSED     CLEAR    CLEARED      .clear): no final, its requests cancelled

Finals leave in utterance order: an ANSWERED utterance waits for the earlier ones. Partials are
asked for only while SPEAKING. Any other event raises ``InvalidTransition``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from server.core.agreement import LocalAgreement
from server.core.state_machine import StateMachine, TransitionTable
from server.core.transcription import Samples, TranscribeRequest, Transcription


class UtteranceState(enum.Enum):
    SPEAKING = "speaking"
    PAUSED = "paused"
    ENDED = "ended"
    ANSWERED = "answered"
    DONE = "done"
    CLEARED = "cleared"


class UtteranceEvent(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    END = "end"
    ANSWER = "answer"
    FAIL = "fail"
    EMIT = "emit"
    CLEAR = "clear"


S, E = UtteranceState, UtteranceEvent
UTTERANCE_TRANSITIONS: TransitionTable[UtteranceState, UtteranceEvent] = {
    (S.SPEAKING, E.PAUSE): S.PAUSED,
    (S.PAUSED, E.RESUME): S.SPEAKING,
    (S.PAUSED, E.ANSWER): S.PAUSED,
    (S.PAUSED, E.FAIL): S.PAUSED,
    (S.SPEAKING, E.END): S.ENDED,
    (S.PAUSED, E.END): S.ENDED,
    (S.ENDED, E.ANSWER): S.ANSWERED,
    (S.ENDED, E.FAIL): S.ANSWERED,
    (S.ANSWERED, E.EMIT): S.DONE,
    (S.SPEAKING, E.CLEAR): S.CLEARED,
    (S.PAUSED, E.CLEAR): S.CLEARED,
}
del S, E


@dataclass(slots=True)
class Utterance:
    """An utterance from its start until its final is sent."""

    utterance_id: int
    start_samples: int
    machine: StateMachine[UtteranceState, UtteranceEvent] = field(init=False)
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    end_samples: int | None = None
    end_reason: str = ""
    wanted_final_end: int | None = None  # end of the audio the final should cover
    final_audio: Samples | None = None  # that audio, kept: its request may wait for the prompt
    final_request: TranscribeRequest | None = None
    final_answer: Transcription | None = None
    final_failed: str | None = None
    # Partial pacing: the next position a partial is due at, the last voiced sample the
    # previous partial covered, the newest partial applied, and what the screen shows.
    next_partial_samples: int = 0
    partial_voiced_end: int = -1
    applied_partial_id: int = -1
    last_partial: tuple[str, str] | None = None
    # Partials whose audio ends in a pause (settled hypotheses: their last word is whole).
    settled_partial_ids: set[int] = field(default_factory=set)
    # The newest partial asked for, the one before it, and the newest whose words the
    # agreement counted.
    latest_partial_id: int = -1
    earlier_partial_id: int = -1
    latest_partial_end: int = -1
    voted_partial_id: int = -1
    # The newest partial applied ended on a phrase said twice: a loop, or a repetition the
    # final's check would take for one (see ``RequestMaker.final``).
    partial_looped: bool = False

    def __post_init__(self) -> None:
        self.machine = StateMachine(
            UTTERANCE_TRANSITIONS,
            UtteranceState.SPEAKING,
            name=f"utterance {self.utterance_id}",
        )

    @property
    def state(self) -> UtteranceState:
        return self.machine.state

    def fire(self, event: UtteranceEvent) -> UtteranceState:
        return self.machine.fire(event)

    @property
    def has_sure_words(self) -> bool:
        """A partial's words have counted in the agreement (unsure first words are only shown)."""
        return self.voted_partial_id >= 0

    @property
    def open(self) -> bool:
        """Speech has not ended: partials still shape the stable words."""
        return self.state in (UtteranceState.SPEAKING, UtteranceState.PAUSED)

    @property
    def has_outcome(self) -> bool:
        """The final request was answered or failed."""
        return self.final_answer is not None or self.final_failed is not None

    def pause(self, end_samples: int, audio: Samples | None) -> None:
        """Speech paused at ``end_samples``: the final should cover the audio up to there.
        ``audio`` is that audio (``None``: the same span as already kept)."""
        self.fire(UtteranceEvent.PAUSE)
        self.want_final(end_samples, audio)

    def settle_latest_partial(self, voiced_end_samples: int) -> None:
        """Speech paused with nothing voiced after the newest partial's audio: that partial
        heard the utterance whole, as a pause partial would have (none is asked for, there is
        nothing new to hear), so it counts as a settled hypothesis."""
        if self.latest_partial_id < 0 or self.partial_voiced_end < voiced_end_samples:
            return
        if self.voted_partial_id == self.latest_partial_id:
            self.agreement.settle_last_hypothesis()
        elif self.latest_partial_id > self.applied_partial_id:
            self.settled_partial_ids.add(self.latest_partial_id)  # its answer is on its way

    def want_final(self, end_samples: int, audio: Samples | None) -> None:
        if audio is not None:
            self.final_audio = audio
        self.wanted_final_end = end_samples

    def resume(self) -> TranscribeRequest | None:
        """Speech resumed: the speculative final is moot. Returns its request, to cancel."""
        self.fire(UtteranceEvent.RESUME)
        self.wanted_final_end = None
        self.final_audio = None
        return self._drop_final()

    def end(self, end_samples: int, reason: str) -> TranscribeRequest | None:
        """Speech ended at ``end_samples``. A speculative final for another span is dropped
        (returned, to cancel); one for exactly this span is the final."""
        self.fire(UtteranceEvent.END)
        self.end_samples = end_samples
        self.end_reason = reason
        request = self.final_request
        if request is not None and request.end_samples != end_samples:
            return self._drop_final()
        if self.has_outcome:
            answered = self.final_answer is not None
            self.fire(UtteranceEvent.ANSWER if answered else UtteranceEvent.FAIL)
        return None

    def clear(self) -> TranscribeRequest | None:
        """The client discarded this utterance's audio. Returns its speculative final's
        request, to cancel."""
        self.fire(UtteranceEvent.CLEAR)
        self.wanted_final_end = None
        self.final_audio = None
        return self._drop_final()

    def receive_answer(self, answer: Transcription) -> None:
        self.final_answer = answer
        self.fire(UtteranceEvent.ANSWER)

    def receive_failure(self, message: str) -> None:
        self.final_failed = message
        self.fire(UtteranceEvent.FAIL)

    def _drop_final(self) -> TranscribeRequest | None:
        request, self.final_request = self.final_request, None
        self.final_answer = None
        self.final_failed = None
        return request


@dataclass(slots=True)
class FailedUtterance:
    """An utterance whose final failed: what a retry needs to produce its final."""

    utterance_id: int
    start_samples: int
    end_samples: int
    reason: str
    audio: Samples
    retry_request: TranscribeRequest | None = None
