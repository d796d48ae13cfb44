"""A state and the table of its legal transitions, as h11 keeps them: the rules are data, and
an event the table has no row for raises ``InvalidTransition`` instead of corrupting state."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

from server.core.errors import InvalidTransition

StateT = TypeVar("StateT", bound=enum.Enum)
EventT = TypeVar("EventT", bound=enum.Enum)

TransitionTable = Mapping[tuple[StateT, EventT], StateT]


class StateMachine(Generic[StateT, EventT]):
    __slots__ = ("_state", "_table", "name")

    def __init__(
        self, table: TransitionTable[StateT, EventT], initial: StateT, *, name: str
    ) -> None:
        self._table = table
        self._state = initial
        self.name = name

    @property
    def state(self) -> StateT:
        return self._state

    def fire(self, event: EventT) -> StateT:
        """Move to the state the table gives for (current state, ``event``)."""
        try:
            self._state = self._table[(self._state, event)]
        except KeyError:
            raise InvalidTransition(
                f"{self.name}: {event.name} is not allowed in state {self._state.name}"
            ) from None
        return self._state

    def can(self, event: EventT) -> bool:
        return (self._state, event) in self._table
