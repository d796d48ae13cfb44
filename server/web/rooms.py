"""Meeting rooms: the sessions of several speakers feed one shared transcript, which viewers
follow live and anyone with the room's watch token can download.

A room lives in this server's memory. Its ``join_token`` lets a session speak in it
(``/v1/stream?room_id=&join_token=&speaker=``), its ``watch_token`` lets anyone follow it. Each
speaker's finals (and, for viewers who ask, partials) are told to the room through the
session's ``Watchers`` (``RoomSeat`` is a listener there), labelled with the speaker and placed
on the room's clock (``server.core.room``). A room ends when its creator closes it, or when it
has had no speaker and no viewer for ``room_idle_timeout_s``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.websockets import WebSocket

from server.core.errors import InvalidMessage, LimitExceeded, Unauthorized
from server.core.room import RoomFinal, RoomTranscript, check_speaker, room_final
from server.policy.auth import same_secret
from server.settings import RoomSettings, StreamingSettings
from server.web.watchers import Watchers

UNLIMITED = 1_000_000
# How a session asks to speak in a room: query parameters, or keys of ``session.update``.
ROOM_PARAMS = ("room_id", "join_token", "speaker")


def _limit(value: int) -> int:
    return value or UNLIMITED


class Room:
    def __init__(
        self,
        name: str,
        owner: str,
        settings: RoomSettings,
        streaming: StreamingSettings,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.room_id = "room_" + secrets.token_hex(8)
        self.name = name
        self.owner = owner
        self.settings = settings
        self.join_token = secrets.token_urlsafe(16)
        self.watch_token = secrets.token_urlsafe(16)
        self.created_at = time.time()
        self.opened_at = time.monotonic()  # the room clock's 0
        self.last_activity = self.opened_at
        self.transcript = RoomTranscript()
        self.seats: dict[str, RoomSeat] = {}  # by session id
        self.closed = False
        full = LimitExceeded(
            f"this room already has {settings.max_room_viewers} viewers",
            code="too_many_viewers",
            limit="max_room_viewers",
        )
        viewers = _limit(settings.max_room_viewers)
        # Viewers of finals only, and viewers who asked for partials too.
        self.viewers = Watchers(streaming, log, max_viewers=viewers, full=full)
        self.partial_viewers = Watchers(streaming, log, max_viewers=viewers, full=full)

    # ------------------------------------------------------------------ speakers

    def check_can_join(self, speaker: str) -> str:
        """The speaker's name, checked; ``PeerError`` when it is not valid or the room full."""
        name = check_speaker(speaker)
        if len(self.seats) >= _limit(self.settings.max_room_speakers):
            raise LimitExceeded(
                f"this room already has {self.settings.max_room_speakers} speakers",
                code="too_many_speakers",
                limit="max_room_speakers",
            )
        return name

    def join(self, session_id: str, speaker: str, stream_zero: float) -> RoomSeat:
        """A session that speaks in this room from now on; its stream time 0 was at
        ``stream_zero`` (monotonic: when the session opened)."""
        name = self.check_can_join(speaker)
        joined_at_ms = round((stream_zero - self.opened_at) * 1000)
        seat = RoomSeat(self, session_id, name, joined_at_ms)
        self.seats[session_id] = seat
        self._touch()
        self._broadcast(self._membership("room.speaker_joined", seat))
        return seat

    def leave(self, seat: RoomSeat) -> None:
        if self.seats.pop(seat.session_id, None) is not None:
            self._touch()
            self._broadcast(self._membership("room.speaker_left", seat))

    def add_final(self, final: RoomFinal) -> None:
        if self.transcript.add(final):
            self._touch()
            self._broadcast(self._message(final.message()))

    def add_partial(self, seat: RoomSeat, partial: dict[str, Any]) -> None:
        message = self._message(
            {
                "type": "transcript.partial",
                "speaker": seat.speaker,
                "session_id": seat.session_id,
                "utterance_id": partial["utterance_id"],
                "room_start_ms": seat.joined_at_ms + int(partial["start_ms"]),
                "text": partial["text"],
                "stable_text": partial.get("stable_text", ""),
            }
        )
        self.partial_viewers.broadcast(message)

    # ------------------------------------------------------------------ viewers

    async def serve_viewer(self, websocket: WebSocket, *, partials: bool) -> None:
        if self.viewers.count + self.partial_viewers.count >= _limit(
            self.settings.max_room_viewers
        ):
            raise self.viewers.full
        finals = [self._message(final.message()) for final in self.transcript.finals]
        started = self._message(
            {
                "type": "room.started",
                "name": self.name,
                "finals": len(finals),
                "speakers": sorted({seat.speaker for seat in self.seats.values()}),
            }
        )
        self._touch()
        try:
            await (self.partial_viewers if partials else self.viewers).serve(
                websocket, [started, *finals]
            )
        finally:
            self._touch()

    # ------------------------------------------------------------------ the room

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        message = self._message({"type": "room.closed", "reason": reason})
        for viewers in (self.viewers, self.partial_viewers):
            viewers.close_all(message, "room closed")

    def idle_for_s(self, now: float) -> float:
        busy = self.seats or self.viewers.count or self.partial_viewers.count
        return 0.0 if busy else now - self.last_activity

    def description(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "name": self.name,
            "join_token": self.join_token,
            "watch_token": self.watch_token,
            "created_at": int(self.created_at),
            "idle_timeout_s": self.settings.room_idle_timeout_s,
        }

    def _broadcast(self, message: dict[str, Any]) -> None:
        self.viewers.broadcast(message)
        self.partial_viewers.broadcast(message)

    def _membership(self, kind: str, seat: RoomSeat) -> dict[str, Any]:
        return self._message({"type": kind, "speaker": seat.speaker, "session_id": seat.session_id})

    def _message(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "room_id": self.room_id}

    def _touch(self) -> None:
        self.last_activity = time.monotonic()


class RoomSeat:
    """One session speaking in a room: a listener on the session's ``Watchers``."""

    def __init__(self, room: Room, session_id: str, speaker: str, joined_at_ms: int) -> None:
        self.room = room
        self.session_id = session_id
        self.speaker = speaker
        self.joined_at_ms = joined_at_ms

    def receive(self, message: dict[str, Any]) -> None:
        if self.room.closed:
            return
        kind = message.get("type")
        if kind == "transcript.final":
            self.room.add_final(room_final(self.speaker, self.joined_at_ms, message))
        elif kind == "transcript.partial":
            self.room.add_partial(self, message)
        elif kind == "session.closed":
            self.room.leave(self)


class Seatable(Protocol):
    """What a live session offers a room (``LiveSession`` has it)."""

    session_id: str
    opened_at: float  # monotonic: the session's stream time 0
    watchers: Watchers
    seat: RoomSeat | None


def join_room(live: Seatable, room: Room, speaker: str) -> None:
    """``live`` speaks in ``room`` from now on (once per session): its finals and partials
    are told to the room too."""
    if live.seat is not None:
        raise InvalidMessage("this session already speaks in a room", code="invalid_session")
    live.seat = room.join(live.session_id, speaker, live.opened_at)
    live.watchers.listeners.append(live.seat.receive)


class RoomRegistry:
    """The rooms of this server."""

    def __init__(
        self,
        settings: RoomSettings,
        streaming: StreamingSettings,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.settings = settings
        self.streaming = streaming
        self.log = log
        self._rooms: dict[str, Room] = {}

    def create(self, owner: str, name: str) -> Room:
        owned = sum(room.owner == owner for room in self._rooms.values())
        if owned >= _limit(self.settings.max_rooms_per_key):
            raise LimitExceeded(
                f"this API key already has {self.settings.max_rooms_per_key} open rooms; close "
                "one first",
                code="too_many_rooms",
                limit="max_rooms_per_key",
            )
        room = Room(name, owner, self.settings, self.streaming, self.log)
        self._rooms[room.room_id] = room
        self.log.info("room %s opened", room.room_id)
        return room

    def find(self, room_id: str, token: str, *, joining: bool) -> Room:
        """The open room ``room_id`` if ``token`` is its join (or watch) token."""
        room = self._rooms.get(room_id)
        expected = (room.join_token if joining else room.watch_token) if room else ""
        if room is None or not token or not same_secret(expected, token):
            raise Unauthorized(
                "no open room with that id and token (it may have ended)",
                code="room_not_found",
            )
        return room

    def room_to_join(self, params: Mapping[str, Any]) -> Room | None:
        """The room ``params`` ask to speak in (``room_id``, ``join_token``, ``speaker``),
        checked; ``None`` when they name none."""
        if "room_id" not in params:
            return None
        room = self.find(str(params["room_id"]), str(params.get("join_token", "")), joining=True)
        room.check_can_join(str(params.get("speaker", "")))
        return room

    def close(self, room_id: str, owner: str) -> bool:
        """End a room; only its creator may. False: no such room of theirs."""
        room = self._rooms.get(room_id)
        if room is None or room.owner != owner:
            return False
        self._end(room, "closed")
        return True

    def sweep(self, now: float) -> None:
        """End the rooms idle for longer than ``room_idle_timeout_s``."""
        for room in list(self._rooms.values()):
            if room.idle_for_s(now) > self.settings.room_idle_timeout_s:
                self._end(room, "idle_timeout")

    def close_all(self) -> None:
        for room in list(self._rooms.values()):
            self._end(room, "server_shutdown")

    def _end(self, room: Room, reason: str) -> None:
        self._rooms.pop(room.room_id, None)
        room.close(reason)
        self.log.info("room %s ended (%s)", room.room_id, reason)
