"""Partial text that a backend streams while it decodes (remote gpt-4o deltas), gathered on the
event loop whatever thread the backend calls from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.core.transcription import Segment


def growing_text(
    loop: asyncio.AbstractEventLoop, show: Callable[[str], None]
) -> Callable[[Segment], None]:
    """A segment callback that hops to ``loop`` and calls ``show`` with all text so far."""
    pieces: list[str] = []

    def on_loop(piece: str) -> None:
        pieces.append(piece)
        show("".join(pieces))

    def from_any_thread(segment: Segment) -> None:
        loop.call_soon_threadsafe(on_loop, segment.text)

    return from_any_thread
