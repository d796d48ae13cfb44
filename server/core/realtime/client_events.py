"""Client events of OpenAI's Realtime transcription protocol, parsed into commands.

    client event                              command
    ----------------------------------------  ---------------------------------------------------
    input_audio_buffer.append {audio}         Append (base64, decoded by ``realtime.audio``)
    input_audio_buffer.commit                 Commit
    input_audio_buffer.clear                  Clear
    session.update {session}                  Update (GA shape, or beta shape from beta clients)
    transcription_session.update {session}    Update (beta)

Anything else (a conversation event such as ``response.create``, an unknown type, JSON that is
not an object) is an ``InvalidMessage`` whose ``param`` names the field at fault; the adapter
answers it with OpenAI's ``error`` event, carrying the client's ``event_id``, and goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from server.core.errors import InvalidMessage

# Events of OpenAI's conversation sessions: known, but not part of a transcription session.
CONVERSATION_EVENTS = frozenset(
    {
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)


@dataclass(frozen=True, slots=True)
class Append:
    audio: Any


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class Clear:
    pass


@dataclass(frozen=True, slots=True)
class Update:
    session: Any


Command = Append | Commit | Clear | Update
COMMANDS: dict[str, type[Command]] = {
    "input_audio_buffer.append": Append,
    "input_audio_buffer.commit": Commit,
    "input_audio_buffer.clear": Clear,
    "session.update": Update,
    "transcription_session.update": Update,
}


def client_event_id(text: str) -> str | None:
    """The ``event_id`` the client gave its event, if it can be read at all."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    value = event.get("event_id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def parse_client_event(text: str) -> Command:
    try:
        event = json.loads(text)
    except ValueError:
        raise InvalidMessage(
            "the event is not valid JSON", code="invalid_json", param=None
        ) from None
    if not isinstance(event, dict):
        raise InvalidMessage("an event must be a JSON object", code="invalid_type")
    kind = event.get("type")
    if not isinstance(kind, str):
        raise InvalidMessage(
            "an event needs a 'type'", code="missing_required_parameter", param="type"
        )
    if kind in CONVERSATION_EVENTS:
        raise InvalidMessage(
            f"{kind!r} belongs to conversation sessions; this is a transcription session",
            code="invalid_value",
            param="type",
        )
    command = COMMANDS.get(kind)
    if command is None:
        supported = ", ".join(repr(name) for name in COMMANDS)
        raise InvalidMessage(
            f"Invalid value: {kind!r}. Supported values are: {supported}.",
            code="invalid_value",
            param="type",
        )
    if command is Append:
        if "audio" not in event:
            raise InvalidMessage(
                "input_audio_buffer.append needs 'audio'",
                code="missing_required_parameter",
                param="audio",
            )
        return Append(event["audio"])
    if command is Update:
        if "session" not in event:
            raise InvalidMessage(
                f"{kind} needs 'session'", code="missing_required_parameter", param="session"
            )
        return Update(event["session"])
    return Commit() if command is Commit else Clear()
