"""The rooms' HTTP and websocket endpoints (the rooms themselves are in ``rooms``):

    POST   /v1/rooms                             an API key; body {"name": ...} -> the room,
                                                 its join_token and watch_token
    DELETE /v1/rooms/{room_id}                   the creator's key: the room ends
    GET    /v1/rooms/{room_id}/transcript        ?format=json|txt|srt|vtt&watch_token=
    WS     /v1/rooms/{room_id}/watch             ?watch_token=[&partials=true]

Speakers join with ``/v1/stream?room_id=&join_token=&speaker=`` (``stream_endpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from server.core import protocol, room
from server.core.errors import ApiError, LimitExceeded, PeerError
from server.core.protocol import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER
from server.runtime.context import ServerContext
from server.web.rooms import RoomRegistry
from server.web.ws_link import refuse

MAX_NAME_CHARS = 100
# How often idle rooms are looked for.
SWEEP_INTERVAL_S = 30.0
MEDIA_TYPES = {"txt": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


def room_router(context: ServerContext, rooms: RoomRegistry) -> APIRouter:
    router = APIRouter(tags=["rooms"])

    @router.post("/v1/rooms", responses={400: {}, 401: {}, 429: {}})
    async def create_room(request: Request) -> JSONResponse:
        """Open a meeting room. Speakers join its sessions with the ``join_token``; viewers
        follow it, and download its transcript, with the ``watch_token``."""
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, 'the body must be JSON: {"name": ...}') from None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_CHARS:
            raise ApiError(400, f"name must be a string of 1-{MAX_NAME_CHARS} characters")
        try:
            created = rooms.create(_owner(request), name.strip())
        except LimitExceeded as exc:
            raise ApiError(429, exc.message, code=exc.code) from None
        return JSONResponse(created.description(), status_code=201)

    @router.delete("/v1/rooms/{room_id}", responses={401: {}, 404: {}})
    async def close_room(room_id: str, request: Request) -> dict[str, Any]:
        """End a room (its creator only): viewers get ``room.closed``; speakers' sessions go
        on, outside the room."""
        if not rooms.close(room_id, _owner(request)):
            raise ApiError(404, f"no open room {room_id!r} of this key", code="room_not_found")
        return {"room_id": room_id, "closed": True}

    @router.get("/v1/rooms/{room_id}/transcript", responses={400: {}, 404: {}})
    async def transcript(room_id: str, watch_token: str = "", format: str = "json") -> Response:
        """The whole meeting so far, in order (see docs/protocol.md, Rooms)."""
        if format not in room.TRANSCRIPT_FORMATS:
            raise ApiError(
                400, f"format must be one of {', '.join(room.TRANSCRIPT_FORMATS)}", param="format"
            )
        try:
            found = rooms.find(room_id, watch_token, joining=False)
        except PeerError as exc:
            raise ApiError(404, exc.message, code=exc.code) from None
        finals = found.transcript.finals
        if format == "json":
            return JSONResponse(room.as_json(found.name, finals))
        render = {"txt": room.as_text, "srt": room.as_srt, "vtt": room.as_vtt}[format]
        return PlainTextResponse(render(finals), media_type=MEDIA_TYPES[format])

    @router.websocket("/v1/rooms/{room_id}/watch")
    async def watch_room(websocket: WebSocket, room_id: str) -> None:
        await websocket.accept()
        params = websocket.query_params
        try:
            found = rooms.find(room_id, params.get("watch_token", ""), joining=False)
            await found.serve_viewer(websocket, partials=params.get("partials") == "true")
        except PeerError as exc:
            context.metrics.record_error(exc.code)
            close = CLOSE_TRY_AGAIN_LATER if isinstance(exc, LimitExceeded) else CLOSE_POLICY
            await refuse(websocket, protocol.error("", exc.code, exc.message), close)

    return router


def _owner(request: Request) -> str:
    principal = getattr(request.state, "principal", None)  # set by AccessMiddleware
    return principal.key_id if principal is not None else "anonymous"


async def sweep_rooms(rooms: RoomRegistry) -> None:
    """End idle rooms, for as long as the server runs."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        with contextlib.suppress(Exception):
            rooms.sweep(time.monotonic())
