"""The websocket edge of streaming: ``ws://HOST:PORT/v1/stream``.

Before any audio is read the connection is checked: credential (``Authorization: Bearer`` or
``?token=``), browser origin, then either a new session within the session limits, or a resume
of a detached one (``session_id`` and ``resume_token``, from the same API key). A refusal is an
``error`` event and a close: 1008 (policy) for credentials, origins and bad resumes, 1013 (try
again later) for capacity: the session limits, and the server's measured load
(``server.policy.load``). The session itself runs in ``live_session``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from server.core import protocol
from server.core.errors import InvalidMessage, LimitExceeded, PeerError, Unauthorized
from server.core.protocol import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER
from server.core.session import Session, default_detector
from server.policy.auth import Principal, bearer, same_secret
from server.web.admission import admit, check_open, check_origin
from server.web.live_session import LiveSession, LiveSessionRegistry
from server.web.rooms import ROOM_PARAMS, RoomRegistry, join_room
from server.web.session_choices import check_session_choices
from server.web.ws_link import refuse

if TYPE_CHECKING:
    from server.runtime.context import ServerContext

RESUME_PARAMS = ("session_id", "resume_token", "last_final_id")


async def handle_stream(
    websocket: WebSocket,
    context: ServerContext,
    registry: LiveSessionRegistry,
    rooms: RoomRegistry | None = None,
) -> None:
    await websocket.accept()
    try:
        principal = _authenticate(websocket, context)
        check_origin(websocket, context)
        check_open(context)
        if "session_id" in websocket.query_params:
            live, last_final_id = _find_resumable(websocket, registry, principal)
        else:
            live = _new_session(websocket, context, registry, principal, rooms)
            last_final_id = None
    except PeerError as exc:
        close = CLOSE_TRY_AGAIN_LATER if isinstance(exc, LimitExceeded) else CLOSE_POLICY
        context.metrics.record_error(exc.code)
        session_id = websocket.query_params.get("session_id", "")
        await refuse(websocket, protocol.error(session_id, exc.code, exc.message), close)
        return
    await live.attach(websocket, last_final_id=last_final_id)


def _authenticate(websocket: WebSocket, context: ServerContext) -> Principal:
    credential = bearer(websocket.headers.get("authorization")) or websocket.query_params.get(
        "token"
    )
    return context.authenticator.authenticate(credential, time.time(), accept_tokens=True)


def _new_session(
    websocket: WebSocket,
    context: ServerContext,
    registry: LiveSessionRegistry,
    principal: Principal,
    rooms: RoomRegistry | None,
) -> LiveSession:
    params = {
        key: value
        for key, value in websocket.query_params.items()
        if key not in RESUME_PARAMS + ROOM_PARAMS
    }
    params.setdefault("vad", context.streaming.default_vad)
    options = protocol.options_from_query(params)
    principal.check_pinned(options.model_dump(include=set(params)))
    if principal.pinned:
        options = options.updated(principal.pinned)
    check_session_choices(context, options.model_dump(include={"model", "partial_backend", "task"}))
    room = rooms.room_to_join(websocket.query_params) if rooms is not None else None
    session = Session(protocol.new_session_id(), options, detector_factory=default_detector)
    admit(context, principal)
    live = LiveSession(context, registry, session, principal)
    live.rooms = rooms
    if room is not None:
        join_room(live, room, websocket.query_params.get("speaker", ""))
    return live


def _find_resumable(
    websocket: WebSocket, registry: LiveSessionRegistry, principal: Principal
) -> tuple[LiveSession, int]:
    params = websocket.query_params
    live = registry.get(params["session_id"])
    token = params.get("resume_token", "")
    if (
        live is None
        or not same_secret(live.resume_token, token)
        or live.principal.key_id != principal.key_id
    ):
        raise Unauthorized(
            "no resumable session with that id and token (it ended, or its grace period "
            "passed); start a new session",
            code="resume_failed",
        )
    raw = params.get("last_final_id", "0")
    if not raw.isdigit():
        raise InvalidMessage("last_final_id must be the id of the last final received, or 0")
    return live, int(raw)


async def handle_watch(
    websocket: WebSocket, context: ServerContext, registry: LiveSessionRegistry, session_id: str
) -> None:
    """A read-only viewer of a running session (``/v1/watch/{session_id}?watch_token=``): the
    share link is the credential, so meeting screens need no API key."""
    await websocket.accept()
    live = registry.get(session_id)
    token = websocket.query_params.get("watch_token", "")
    try:
        if live is None or not same_secret(live.watch_token, token):
            raise Unauthorized(
                "no running session with that id and watch token (it may have ended)",
                code="watch_failed",
            )
        finals = live.final_log.finals()
        await live.watchers.serve(
            websocket, [protocol.watch_started(session_id, len(finals)), *finals]
        )
    except PeerError as exc:
        context.metrics.record_error(exc.code)
        close = CLOSE_TRY_AGAIN_LATER if isinstance(exc, LimitExceeded) else CLOSE_POLICY
        await refuse(websocket, protocol.error(session_id, exc.code, exc.message), close)
