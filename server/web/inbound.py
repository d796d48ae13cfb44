"""Reading a live session's next client message under its time limits."""

from __future__ import annotations

import asyncio
import math
from collections.abc import MutableMapping
from typing import Any

from starlette.websockets import WebSocket

from server.core.errors import LimitExceeded
from server.policy.limits import check_session_length, session_too_long
from server.settings import SessionLimits


async def receive_within_limits(
    websocket: WebSocket, limits: SessionLimits, elapsed_s: float
) -> MutableMapping[str, Any]:
    """The next client message; ``LimitExceeded`` when the client stays silent past
    ``idle_timeout_s`` or the session (``elapsed_s`` old) passes ``max_session_s``."""
    check_session_length(elapsed_s, limits)
    idle_s = limits.idle_timeout_s or math.inf
    remaining_s = limits.max_session_s - elapsed_s if limits.max_session_s else math.inf
    if math.isinf(idle_s) and math.isinf(remaining_s):
        return await websocket.receive()
    try:
        # wait_for, not an ``asyncio.timeout`` scope: its task per message makes the reader
        # yield to the loop between messages, so a client sending faster than real time does
        # not starve the partials of its own and other sessions (a room test caught it).
        return await asyncio.wait_for(websocket.receive(), timeout=min(idle_s, remaining_s))
    except TimeoutError:
        if remaining_s <= idle_s:
            raise session_too_long(limits) from None
        raise LimitExceeded(
            f"no message for idle_timeout_s ({limits.idle_timeout_s:g} s)",
            code="idle_timeout",
            limit="idle_timeout_s",
        ) from None
