"""When a partial is due. Partials follow new speech, never faster than the model answers them.

A partial is due every ``partial_interval_ms`` of new audio, but only if speech was heard since
the previous one (re-transcribing a pause shows nothing new and delays the final), and no
sooner than the last partial's turnaround (queue wait plus inference): under load, partials
slow down before finals do. The server's load level doubles the interval (``PARTIALS_SLOWED``)
or stops partials (``PARTIALS_PAUSED``); the first partial of an utterance is never slowed by
load: it shows the speaker they are heard. Until an utterance has shown text, a partial is due
every 100 ms of new audio, with at most one of them unanswered (the request at the onset often
hears too little for Whisper's thresholds, and a partial of base takes longer than 100 ms: two
run side by side, see ``server.policy.queue``). Words the model is not yet sure of are shown
but do not end the chase: it goes on, one partial at a time, until a partial's words vote.

When the speaker pauses (the segmenter's ``SpeechPaused``, as the speculative final is asked
for) after words no partial has heard, one more partial is due at once, whatever the interval:
its audio ends in silence, so it is a settled hypothesis
(``LocalAgreement.receive_settled_hypothesis``), and at the end of an utterance it is the last
chance of stable words (OpenAI Realtime deltas) before the silence window closes. Not under load,
nor when the model's turnaround says it would come after the window.
"""

from __future__ import annotations

from server.core.load_report import LoadLevel
from server.core.session.utterance import Utterance, UtteranceState
from server.core.units import ms_to_samples

# Until an utterance shows text, how much new audio makes another partial worth asking for.
# 50 ms gave tiny.en its first words sooner without a clock (0.47 against 0.50 s of speech
# after a final, benchmarks/first_words.py) but not live (0.54 s p50 both), and its streaming
# WER was 0.5-1.2 points worse (benchmarks/agreement_replay.py, benchmarks/RESULTS.md).
FIRST_WORDS_STEP_MS = 100


class PartialPacer:
    def __init__(self, interval_ms: float) -> None:
        self.interval_ms = interval_ms
        self.load = LoadLevel.NORMAL
        self.turnaround_ms = 0.0

    def first_due(self, start_samples: int) -> int:
        """Where a new utterance's first partial is due."""
        return start_samples + ms_to_samples(self.interval_ms)

    def due(self, utterance: Utterance, position_samples: int, voiced_end_samples: int) -> bool:
        """Whether ``utterance`` gets a partial now; if so, when the next one is due."""
        if (
            self.load is LoadLevel.PARTIALS_PAUSED
            or utterance.state is not UtteranceState.SPEAKING  # paused: the final is coming
            or voiced_end_samples <= utterance.partial_voiced_end
        ):
            return False
        if position_samples < utterance.next_partial_samples and not self.chasing_first_words(
            utterance, position_samples
        ):
            return False
        utterance.partial_voiced_end = voiced_end_samples
        interval = self._interval_samples()
        if position_samples - utterance.start_samples < 2 * interval:
            # Early in an utterance, twice as often: the request at speech onset often hears
            # too little to give text, and the first words tell the speaker they are heard.
            interval //= 2
        utterance.next_partial_samples = position_samples + interval
        return True

    def chasing_first_words(self, utterance: Utterance, position_samples: int) -> bool:
        """Whether a partial is due early because the utterance has no sure words yet.

        The first request, at speech onset, often hears too little to hold a word. Until a
        partial has shown text, the next is due once ``FIRST_WORDS_STEP_MS`` more audio came in
        and every partial but the newest is answered, rather than half an interval later:
        first words are what tells the speaker they are heard. A partial takes longer than the
        step on slower models (base about 170 ms on one thread), so the newest may still be
        running: the two run side by side where a worker is free. First words the model was
        not sure of (shown, but no vote: ``outcomes.apply_partial``) end the wait for text
        but not the chase, which then goes on one partial at a time: it is what keeps the
        streaming WER where it was (ending it there cost tiny.en a point,
        benchmarks/agreement_replay.py); with words on screen, two at a time would take a
        second worker from the finals for nothing the speaker is waiting to see.
        Not under load."""
        newest_may_run = utterance.last_partial is None
        answered_up_to = (
            utterance.earlier_partial_id if newest_may_run else utterance.latest_partial_id
        )
        return (
            self.load is LoadLevel.NORMAL
            and not utterance.has_sure_words
            and utterance.latest_partial_id >= 0
            and answered_up_to <= utterance.applied_partial_id
            and position_samples - utterance.latest_partial_end
            >= ms_to_samples(FIRST_WORDS_STEP_MS)
        )

    def next_partial(
        self,
        utterance: Utterance,
        position_samples: int,
        voiced_end_samples: int,
        silence_window_ms: int,
    ) -> tuple[int, bool] | None:
        """Where a partial due now ends and whether it is a pause partial (``None``: none is)."""
        if self.pause_due(utterance, voiced_end_samples, silence_window_ms):
            # It covers what the speculative final covers: up to where the pause began.
            return (utterance.wanted_final_end or position_samples, True)
        if self.due(utterance, position_samples, voiced_end_samples):
            return (position_samples, False)
        return None

    def pause_due(
        self, utterance: Utterance, voiced_end_samples: int, silence_window_ms: int
    ) -> bool:
        """Whether ``utterance`` gets a pause partial now (see the module's docstring)."""
        if (
            self.load is not LoadLevel.NORMAL
            or self.turnaround_ms >= silence_window_ms
            or utterance.state is not UtteranceState.PAUSED
            or voiced_end_samples <= utterance.partial_voiced_end
        ):
            return False
        utterance.partial_voiced_end = voiced_end_samples
        return True

    def _interval_samples(self) -> int:
        interval_ms = self.interval_ms
        if self.load is LoadLevel.PARTIALS_SLOWED:
            interval_ms *= 2
        return ms_to_samples(max(interval_ms, self.turnaround_ms))
