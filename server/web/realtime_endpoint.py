"""The websocket edge of OpenAI's Realtime transcription protocol: ``ws://HOST:PORT/v1/realtime``.

Connecting: ``?intent=transcription`` (with or without ``model``: a model in the query names the
transcription model, never a conversation session); the credential as ``Authorization:
Bearer``, as the ``openai-insecure-api-key.<key>`` subprotocol (browsers cannot set headers), or
as ``?token=``; an API key or a browser token from ``/v1/realtime/client_secrets``, whose pinned
options the session keeps. ``OpenAI-Beta: realtime=v1`` (or the ``openai-beta.realtime-v1``
subprotocol) selects the beta event names. Offered the ``realtime`` subprotocol, we choose it.

A refusal is OpenAI's ``error`` event and a close: 1008 for credentials, origins and bad
parameters, 1013 (try again later) for load and limits, which the GA SDK retries.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket

from server.core.errors import InvalidMessage, LimitExceeded, PeerError
from server.core.options import parse_options
from server.core.protocol import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER
from server.core.realtime.config import RealtimeConfig, openai_id
from server.core.realtime.wire import RealtimeWire, error_event
from server.core.session import Session, default_detector
from server.policy.auth import Principal, bearer
from server.web.admission import admit, check_open, check_origin
from server.web.live_session import LiveSessionRegistry
from server.web.realtime_session import RealtimeSession
from server.web.rooms import RoomRegistry, join_room
from server.web.ws_link import refuse

if TYPE_CHECKING:
    from server.runtime.context import ServerContext

SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"


async def handle_realtime(
    websocket: WebSocket,
    context: ServerContext,
    registry: LiveSessionRegistry,
    model_names: Collection[str],
    rooms: RoomRegistry | None = None,
) -> None:
    offered = list(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        principal = _authenticate(websocket, context, offered)
        check_origin(websocket, context)
        model = _requested_model(websocket, context, model_names)
        check_open(context)
        room = rooms.room_to_join(websocket.query_params) if rooms is not None else None
        live = _new_session(websocket, context, registry, principal, (model, model_names))
        live.rooms = rooms
        if room is not None:  # a speaker in a meeting room, as on /v1/stream
            join_room(live, room, websocket.query_params.get("speaker", ""))
    except PeerError as exc:
        close = CLOSE_TRY_AGAIN_LATER if isinstance(exc, LimitExceeded) else CLOSE_POLICY
        context.metrics.record_error(exc.code)
        await refuse(websocket, error_event(exc.code, exc.message, param=exc.param), close)
        return
    await live.attach(websocket)


def _authenticate(websocket: WebSocket, context: ServerContext, offered: list[str]) -> Principal:
    from_subprotocol = next(
        (name[len(KEY_SUBPROTOCOL) :] for name in offered if name.startswith(KEY_SUBPROTOCOL)),
        None,
    )
    credential = (
        bearer(websocket.headers.get("authorization"))
        or from_subprotocol
        or websocket.query_params.get("token")
    )
    return context.authenticator.authenticate(credential, time.time(), accept_tokens=True)


def _requested_model(
    websocket: WebSocket, context: ServerContext, model_names: Collection[str]
) -> str:
    params = websocket.query_params
    intent = params.get("intent", "transcription")
    if intent != "transcription":
        raise InvalidMessage(
            f"intent {intent!r} is not served here: only transcription sessions "
            "(?intent=transcription)",
            code="invalid_value",
            param="intent",
        )
    model = params.get("model") or context.served_models[0]
    if model not in model_names:
        raise InvalidMessage(
            f"model {model!r} is not served here; available: {', '.join(sorted(model_names))}",
            code="model_not_found",
            param="model",
        )
    return model


def _new_session(
    websocket: WebSocket,
    context: ServerContext,
    registry: LiveSessionRegistry,
    principal: Principal,
    models: tuple[str, Collection[str]],
) -> RealtimeSession:
    """``models``: the session's transcription model, and every name the server serves."""
    model, model_names = models
    offered = list(websocket.scope.get("subprotocols", []))
    options = parse_options({"sample_rate": 24000, "vad": context.streaming.default_vad})
    if principal.pinned:
        options = options.updated(principal.pinned)
    beta = "realtime=v1" in websocket.headers.get("openai-beta", "") or BETA_SUBPROTOCOL in offered
    session = Session(openai_id("sess"), options, detector_factory=default_detector)
    wire = RealtimeWire(session.session_id, RealtimeConfig.from_options(options, model), beta=beta)
    admit(context, principal)
    return RealtimeSession(context, registry, session, principal, wire, model_names)
