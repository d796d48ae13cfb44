"""The checks every streaming endpoint makes before a session opens, whatever its protocol:
the browser origin, the server not shutting down, and admission (the server's measured load,
then the session limits). Each refusal is a ``PeerError`` the endpoint words in its protocol;
``LimitExceeded`` means "try again later" (close 1013)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from server.core.errors import LimitExceeded, Unauthorized
from server.policy.auth import Principal

if TYPE_CHECKING:
    from server.runtime.context import ServerContext


def check_origin(websocket: WebSocket, context: ServerContext) -> None:
    allowed = context.auth.allowed_origins
    origin = websocket.headers.get("origin")
    if allowed and origin is not None and origin not in allowed and "*" not in allowed:
        raise Unauthorized(
            f"origin {origin!r} is not in allowed_origins", code="origin_not_allowed"
        )


def check_open(context: ServerContext) -> None:
    if context.shutting_down.is_set():
        raise LimitExceeded(
            "the server is shutting down; reconnect to another one",
            code="server_shutting_down",
            limit="shutdown",
        )


def admit(context: ServerContext, principal: Principal) -> None:
    """Count a new session in, or refuse it for load or limits."""
    context.load.admit(context.sessions.total, time.monotonic())
    context.sessions.admit(principal.key_id, principal.max_sessions)
