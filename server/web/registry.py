"""The live sessions of one server, by id: where a resume or a viewer finds its session, what
hears of load changes, and what a shutdown drains."""

from __future__ import annotations

import asyncio
from typing import Generic, Protocol, TypeVar

from server.core.load_report import LoadReport


class Registered(Protocol):
    """What the registry needs of a session (``LiveSession`` is the one kind there is)."""

    @property
    def session_id(self) -> str: ...

    @property
    def finished(self) -> asyncio.Event: ...

    def receive_load(self, report: LoadReport) -> None: ...

    def drain(self, reason: str) -> None: ...


SessionT = TypeVar("SessionT", bound=Registered)


class LiveSessions(Generic[SessionT]):
    def __init__(self) -> None:
        self._by_id: dict[str, SessionT] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, live: SessionT) -> None:
        self._by_id[live.session_id] = live

    def remove(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def get(self, session_id: str) -> SessionT | None:
        return self._by_id.get(session_id)

    def receive_load(self, report: LoadReport) -> None:
        for live in list(self._by_id.values()):
            live.receive_load(report)

    async def drain(self, grace_s: float) -> None:
        """Let every open session finish its utterances, send its finals and
        ``session.closed``; give up on stragglers after ``grace_s``."""
        sessions = list(self._by_id.values())
        for live in sessions:
            live.drain("server_shutdown")
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(live.finished.wait()) for live in sessions],
                timeout=grace_s,
            )
