"""The state tables of the core: every row is allowed, every other event raises."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from server.core.errors import InvalidTransition, UsageError
from server.core.session.utterance import (
    UTTERANCE_TRANSITIONS,
    Utterance,
    UtteranceEvent,
    UtteranceState,
)
from server.core.state_machine import StateMachine
from server.core.transcription import (
    DecodeOptions,
    RequestKind,
    Segment,
    TranscribeRequest,
    Transcription,
)


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(UtteranceState, UtteranceEvent))
)
def test_the_utterance_table_is_the_only_law(state, event):
    machine = StateMachine(UTTERANCE_TRANSITIONS, state, name="utterance 1")
    if (state, event) in UTTERANCE_TRANSITIONS:
        assert machine.fire(event) is UTTERANCE_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"{event.name} is not allowed"):
            machine.fire(event)
        assert machine.state is state  # a refused event changes nothing


def test_an_invalid_transition_is_a_usage_error():
    assert issubclass(InvalidTransition, UsageError)


def final_request(end: int) -> TranscribeRequest:
    return TranscribeRequest(
        1, "s", 1, RequestKind.FINAL, np.zeros(end, np.float32), DecodeOptions(), 0, end
    )


def answer(text: str) -> Transcription:
    return Transcription(segments=(Segment(text=text),))


def test_a_speculative_answer_for_the_same_span_becomes_the_final():
    utterance = Utterance(1, 0)
    utterance.pause(1600, np.zeros(1600, np.float32))
    utterance.final_request = final_request(1600)
    utterance.receive_answer(answer("early"))
    assert utterance.state is UtteranceState.PAUSED
    assert utterance.end(1600, "silence") is None
    assert utterance.state is UtteranceState.ANSWERED


def test_speech_that_ends_elsewhere_drops_the_speculative_final_and_its_failure():
    utterance = Utterance(1, 0)
    utterance.pause(1600, None)
    speculative = final_request(1600)
    utterance.final_request = speculative
    utterance.receive_failure("remote down")
    assert utterance.end(3200, "silence") is speculative  # to cancel
    assert utterance.state is UtteranceState.ENDED
    assert not utterance.has_outcome  # the final for the whole span is still to be asked


def test_resumed_speech_cancels_the_speculative_final():
    utterance = Utterance(1, 0)
    utterance.pause(1600, np.zeros(1600, np.float32))
    speculative = final_request(1600)
    utterance.final_request = speculative
    assert utterance.resume() is speculative
    assert utterance.state is UtteranceState.SPEAKING
    assert utterance.wanted_final_end is None and utterance.final_audio is None
