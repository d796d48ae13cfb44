"""What a live session says to its client, per protocol: the session core's events become
messages of StreamScribe's own protocol (``StreamWire``) or of OpenAI's Realtime protocol
(``server.core.realtime.wire.RealtimeWire``). The live session keeps the stream-protocol form
of each event for its viewers and its final log either way; the wire decides what its own
client receives."""

from __future__ import annotations

from typing import Any, Protocol

from server.core import protocol
from server.core.events import (
    FinalText,
    PartialText,
    SessionError,
    UtteranceCleared,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.load_report import LoadReport
from server.core.options import SessionOptions
from server.core.protocol import CLOSE_NORMAL

ClientEvent = (
    UtteranceStarted | UtteranceStopped | UtteranceCleared | PartialText | FinalText | SessionError
)
Message = dict[str, Any]


class Wire(Protocol):
    resumable: bool  # a dropped connection may resume the session

    def opened(
        self, options: SessionOptions, *, resume_token: str, watch_token: str
    ) -> list[Message]:
        """The first messages of a new session."""
        ...

    def event(self, event: ClientEvent, message: Message | None) -> list[Message]:
        """``event``'s messages; ``message`` is its stream-protocol form (``None``: it has none)."""
        ...

    def error(
        self, code: str, text: str, *, param: str | None = None, client_event_id: str | None = None
    ) -> Message: ...

    def load_notice(self, report: LoadReport) -> list[Message]: ...

    def closed(self, message: Message) -> list[Message]:
        """The end of the session; ``message`` is the stream protocol's ``session.closed``."""
        ...

    def close_code(self, reason: str) -> int:
        """The websocket close code once the session has drained for ``reason``."""
        ...


class StreamWire:
    """StreamScribe's own protocol (``/v1/stream``): the stream-protocol messages as they are."""

    resumable = True

    def __init__(self, session_id: str, model: str) -> None:
        self.session_id = session_id
        self.model = model

    def opened(
        self, options: SessionOptions, *, resume_token: str, watch_token: str
    ) -> list[Message]:
        created = protocol.session_created(
            self.session_id,
            options,
            self.model,
            resume_token=resume_token,
            watch_token=watch_token,
        )
        return [created]

    def event(self, event: ClientEvent, message: Message | None) -> list[Message]:
        return [message] if message is not None else []

    def error(
        self, code: str, text: str, *, param: str | None = None, client_event_id: str | None = None
    ) -> Message:
        return protocol.error(self.session_id, code, text)

    def load_notice(self, report: LoadReport) -> list[Message]:
        return [protocol.load_notice(self.session_id, report)]

    def closed(self, message: Message) -> list[Message]:
        return [message]

    def close_code(self, reason: str) -> int:
        return CLOSE_NORMAL
