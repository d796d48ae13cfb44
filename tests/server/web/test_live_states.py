"""A live session's state table: every row is allowed, every other event raises."""

from __future__ import annotations

import itertools

import pytest

from server.core.errors import InvalidTransition
from server.core.state_machine import StateMachine
from server.web.live_session import LIVE_TRANSITIONS, LiveEvent, LiveState


@pytest.mark.parametrize(("state", "event"), list(itertools.product(LiveState, LiveEvent)))
def test_the_live_session_table_is_the_only_law(state, event):
    machine = StateMachine(LIVE_TRANSITIONS, state, name="sess_1")
    if (state, event) in LIVE_TRANSITIONS:
        assert machine.fire(event) is LIVE_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition):
            machine.fire(event)


def test_an_ended_session_stays_ended():
    for event in LiveEvent:
        assert LIVE_TRANSITIONS.get((LiveState.ENDED, event), LiveState.ENDED) is LiveState.ENDED
