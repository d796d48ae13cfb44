"""A live session spoken to in OpenAI's Realtime transcription protocol: the same live session
(scheduler, limits, load, drain, metrics) with ``RealtimeWire`` as its voice and
``RealtimeReader`` reading OpenAI's client events.

    client event                 what happens
    ---------------------------  ------------------------------------------------------------
    input_audio_buffer.append    base64 (PCM16 or G.711) -> the session core, under
                                 the session's rate limit; then the idle timeout is checked
    input_audio_buffer.commit    the utterance in progress ends now (committed, item events);
                                 buffered audio without speech becomes an empty item; an empty
                                 buffer (< 100 ms) is OpenAI's input_audio_buffer_commit_empty
    input_audio_buffer.clear     the utterance in progress is dropped; cleared
    session.update               only the named fields change; session.updated
    anything else                OpenAI's error event with the client's event_id; goes on
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from typing import Any

from server.core.errors import InvalidMessage, LimitExceeded, PeerError
from server.core.events import UtteranceStopped
from server.core.realtime.audio import MAX_APPEND_BYTES, decode_append
from server.core.realtime.client_events import (
    Append,
    Clear,
    Command,
    Commit,
    Update,
    client_event_id,
    parse_client_event,
)
from server.core.realtime.config import apply_update, checked_options
from server.core.realtime.wire import RealtimeWire
from server.core.session import Session
from server.policy.auth import Principal
from server.policy.limits import check_message_size
from server.runtime.context import ServerContext
from server.web.client_reader import ClientReader
from server.web.live_session import LiveSession, LiveSessionRegistry

MIN_COMMIT_MS = 100  # OpenAI refuses to commit less audio than this
# An append of OpenAI's largest audio, base64-encoded, with room for the event around it.
MAX_EVENT_CHARS = MAX_APPEND_BYTES * 4 // 3 + 4096


class RealtimeReader(ClientReader):
    live: RealtimeSession

    def _receive_message(self, message: MutableMapping[str, Any]) -> bool:
        if message.get("bytes") is not None:
            self.live.send(
                self.live.wire.error(
                    "invalid_value",
                    "binary messages are not part of this protocol; send audio as "
                    "input_audio_buffer.append events",
                )
            )
            return True
        return super()._receive_message(message)

    def _check_text_size(self, size: int) -> None:
        if size > max(MAX_EVENT_CHARS, self.limits.max_message_bytes):
            check_message_size(size, self.limits)

    def _check_audio_size(self, size: int) -> None:
        """The append that carried it was checked (``_check_text_size``): up to OpenAI's 15 MiB."""

    def _ack(self) -> None:
        """OpenAI's protocol has no acknowledgements (and no resume that would need them)."""

    def _receive_text(self, text: str) -> None:
        try:
            self._apply(parse_client_event(text))
        except LimitExceeded:
            raise
        except PeerError as exc:
            live = self.live
            event_id = client_event_id(text)
            live.send(
                live.wire.error(exc.code, exc.message, param=exc.param, client_event_id=event_id)
            )

    def _apply(self, command: Command) -> None:
        live, session, wire = self.live, self.session, self.live.realtime
        if isinstance(command, Append):
            self._receive_audio(decode_append(command.audio))
            self._check_idle_timeout()
        elif isinstance(command, Commit):
            self._commit()
        elif isinstance(command, Clear):
            live.dispatch(session.receive_clear())
            live.send(wire.cleared(session.position_samples))
        elif isinstance(command, Update):
            self._update(command.session)

    def _commit(self) -> None:
        live, session, wire = self.live, self.session, self.live.realtime
        events = session.receive_commit()
        if any(isinstance(event, UtteranceStopped) for event in events):
            live.dispatch(events)
            return
        buffered_ms = wire.buffered_ms(session.position_samples)
        if buffered_ms < MIN_COMMIT_MS:
            raise InvalidMessage(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        live.send_all(wire.empty_item(session.position_samples, timeout=False))

    def _check_idle_timeout(self) -> None:
        """``server_vad``'s ``idle_timeout_ms``: that long without speech (in audio time),
        the silent buffer is committed as an item, after ``timeout_triggered``."""
        session, wire = self.session, self.live.realtime
        idle_ms = wire.config.turn.idle_timeout_ms
        if (
            wire.config.turn.kind != "server_vad"
            or idle_ms is None
            or session.speaking
            or wire.buffered_ms(session.position_samples) < idle_ms
        ):
            return
        self.live.send_all(wire.empty_item(session.position_samples, timeout=True))

    def _update(self, requested: Any) -> None:
        live, session, wire = self.live, self.session, self.live.realtime
        config = apply_update(wire.config, requested)
        if config.model not in live.model_names:
            raise InvalidMessage(
                f"model {config.model!r} is not served here; available: "
                f"{', '.join(sorted(live.model_names))}",
                code="model_not_found",
                param="session.audio.input.transcription.model",
            )
        changes = checked_options(config, session.options)
        live.principal.check_pinned(changes)
        live.dispatch(session.receive_update(changes))
        wire.config = config
        live.send(wire.session_event("updated"))


class RealtimeSession(LiveSession):
    reader_type = RealtimeReader

    def __init__(
        self,
        context: ServerContext,
        registry: LiveSessionRegistry,
        session: Session,
        principal: Principal,
        wire: RealtimeWire,
        model_names: Collection[str],
    ) -> None:
        super().__init__(context, registry, session, principal, wire)
        self.realtime = wire
        self.model_names = model_names
