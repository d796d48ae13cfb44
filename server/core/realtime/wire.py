"""OpenAI's Realtime transcription protocol as a wire: the session core's events become OpenAI's
server events, in the GA names or, for ``OpenAI-Beta: realtime=v1`` clients, the beta ones.

    core event                  server events (GA; beta differences in brackets)
    --------------------------  ------------------------------------------------------------------
    UtteranceStarted            input_audio_buffer.speech_started {audio_start_ms, item_id}
                                (not with turn_detection null: no VAD runs for the client)
    PartialText                 conversation.item.input_audio_transcription.delta: the stable words
                                not sent yet, so deltas only ever extend the item's text (a
                                final's re-punctuation of a sent word is not a revision)
    UtteranceStopped            input_audio_buffer.speech_stopped {audio_end_ms} (not for a
                                commit), input_audio_buffer.committed {item_id, previous_item_id},
                                conversation.item.added and .done [conversation.item.created]
    FinalText                   a last delta for what the stable words did not cover, then
                                conversation.item.input_audio_transcription.completed
                                {transcript, usage, logprobs when included}
    SessionError (utterance)    conversation.item.input_audio_transcription.failed
    SessionError (session)      error
    UtteranceCleared            nothing (the reader answers input_audio_buffer.cleared)

An item is one utterance: its id is given at speech start, so deltas can name it while the
speaker is still talking. Items complete in order because finals leave the core in order.
"""

from __future__ import annotations

import math
from typing import Any

from server.core.agreement import common_prefix_words, words_of
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
from server.core.protocol import CLOSE_NORMAL, CLOSE_SERVICE_RESTART
from server.core.realtime.config import (
    RealtimeConfig,
    beta_session_view,
    ga_session_view,
    openai_id,
)
from server.core.units import samples_to_ms, samples_to_seconds
from server.core.wire import ClientEvent, Message

TRANSCRIPTION = "conversation.item.input_audio_transcription"


def server_event(kind: str, **fields: Any) -> Message:
    return {"type": kind, "event_id": openai_id("event"), **fields}


def error_event(
    code: str, text: str, *, param: str | None = None, client_event_id: str | None = None
) -> Message:
    """OpenAI's ``error`` event; ``client_event_id`` is the ``event_id`` of the client event
    it answers."""
    error = {
        "type": "server_error" if code == "internal_error" else "invalid_request_error",
        "code": code,
        "message": text,
        "param": param,
        "event_id": client_event_id,
    }
    return server_event("error", error=error)


class RealtimeWire:
    resumable = False  # OpenAI's protocol has no resume: a dropped socket ends the session

    def __init__(self, session_id: str, config: RealtimeConfig, *, beta: bool) -> None:
        self.session_id = session_id
        self.config = config
        self.beta = beta
        self._items: dict[int, str] = {}  # utterance id -> item id
        self._sent: dict[str, list[str]] = {}  # item id -> words sent as deltas
        self.last_item_id: str | None = None  # the previous_item_id of the next committed item
        self.buffer_start_samples = 0  # where the uncommitted input audio buffer begins

    # ------------------------------------------------------------------ session

    def session_view(self) -> dict[str, Any]:
        if self.beta:
            return beta_session_view(self.session_id, self.config)
        return ga_session_view(self.session_id, self.config)

    def session_event(self, kind: str) -> Message:
        """``session.created`` / ``session.updated`` (beta: ``transcription_session.*``)."""
        prefix = "transcription_session" if self.beta else "session"
        return server_event(f"{prefix}.{kind}", session=self.session_view())

    def opened(
        self, options: SessionOptions, *, resume_token: str, watch_token: str
    ) -> list[Message]:
        return [self.session_event("created")]

    def load_notice(self, report: LoadReport) -> list[Message]:
        return []  # OpenAI's protocol has no such event; slower partials are all it means

    def closed(self, message: Message) -> list[Message]:
        return []  # the close code says it

    def close_code(self, reason: str) -> int:
        return CLOSE_SERVICE_RESTART if reason == "server_shutdown" else CLOSE_NORMAL

    def error(
        self, code: str, text: str, *, param: str | None = None, client_event_id: str | None = None
    ) -> Message:
        return error_event(code, text, param=param, client_event_id=client_event_id)

    # ------------------------------------------------------------------ input buffer

    def cleared(self, position_samples: int) -> Message:
        self.buffer_start_samples = position_samples
        return server_event("input_audio_buffer.cleared")

    def empty_item(self, end_samples: int, *, timeout: bool) -> list[Message]:
        """An item for buffered audio with no speech in it: a commit of silence, or the idle
        timeout. Its transcript is empty, as OpenAI's would be."""
        item_id = openai_id("item")
        messages: list[Message] = []
        if timeout:
            messages.append(
                server_event(
                    "input_audio_buffer.timeout_triggered",
                    audio_start_ms=samples_to_ms(self.buffer_start_samples),
                    audio_end_ms=samples_to_ms(end_samples),
                    item_id=item_id,
                )
            )
        seconds = samples_to_seconds(end_samples - self.buffer_start_samples)
        messages += self._committed(item_id, end_samples)
        messages.append(self._completed(item_id, "", seconds, ()))
        return messages

    def buffered_ms(self, position_samples: int) -> int:
        return samples_to_ms(position_samples - self.buffer_start_samples)

    # ------------------------------------------------------------------ core events

    def event(self, event: ClientEvent, message: Message | None) -> list[Message]:
        if isinstance(event, UtteranceStarted):
            item_id = self._items[event.utterance_id] = openai_id("item")
            self._sent[item_id] = []
            if self.config.turn.kind is None:
                return []
            return [
                server_event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=samples_to_ms(event.start_samples),
                    item_id=item_id,
                )
            ]
        if isinstance(event, UtteranceStopped):
            return self._stopped(event)
        if isinstance(event, UtteranceCleared):
            self._sent.pop(self._items.pop(event.utterance_id, ""), None)
            return []
        if isinstance(event, PartialText):
            partial_item = self._items.get(event.utterance_id)
            return self._delta(partial_item, event.stable_text) if partial_item else []
        if isinstance(event, FinalText):
            return self._final(event)
        return self._failed(event)

    def _stopped(self, event: UtteranceStopped) -> list[Message]:
        item_id = self._items.get(event.utterance_id)
        if item_id is None:
            return []
        messages: list[Message] = []
        if self.config.turn.kind is not None and event.reason != "commit":
            messages.append(
                server_event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=samples_to_ms(event.end_samples),
                    item_id=item_id,
                )
            )
        return messages + self._committed(item_id, event.end_samples)

    def _committed(self, item_id: str, end_samples: int) -> list[Message]:
        previous, self.last_item_id = self.last_item_id, item_id
        self.buffer_start_samples = end_samples
        messages = [
            server_event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        ]
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        if self.beta:
            messages.append(
                server_event("conversation.item.created", previous_item_id=previous, item=item)
            )
        else:
            messages.append(
                server_event("conversation.item.added", previous_item_id=previous, item=item)
            )
            messages.append(
                server_event("conversation.item.done", previous_item_id=previous, item=item)
            )
        return messages

    def _delta(self, item_id: str, text: str) -> list[Message]:
        """The words of ``text`` past those already sent, if ``text`` extends them."""
        sent = self._sent.setdefault(item_id, [])
        words = words_of(text)
        # Compared loosely, as the agreement compares: a final may re-punctuate a stable word.
        if len(words) <= len(sent) or common_prefix_words(sent, words) < len(sent):
            return []
        new = words[len(sent) :]
        sent.extend(new)
        delta = " ".join(new) if len(sent) == len(new) else " " + " ".join(new)
        return [
            server_event(f"{TRANSCRIPTION}.delta", item_id=item_id, content_index=0, delta=delta)
        ]

    def _final(self, event: FinalText) -> list[Message]:
        item_id = self._items.pop(event.utterance_id, None)
        if item_id is None:
            return []
        messages = self._delta(item_id, event.text)
        self._sent.pop(item_id, None)
        seconds = samples_to_seconds(event.end_samples - event.start_samples)
        messages.append(self._completed(item_id, event.text, seconds, event.words))
        return messages

    def _completed(
        self, item_id: str, transcript: str, seconds: float, words: tuple[Any, ...]
    ) -> Message:
        message = server_event(
            f"{TRANSCRIPTION}.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(seconds, 3)},
        )
        if self.config.include_logprobs:
            message["logprobs"] = [
                {
                    "token": word.word,
                    "logprob": math.log(max(word.probability, 1e-12)),
                    "bytes": list(word.word.encode()),
                }
                for word in words
            ]
        return message

    def _failed(self, event: SessionError) -> list[Message]:
        item_id = self._items.pop(event.utterance_id, None) if event.utterance_id else None
        if item_id is None:
            return [self.error(event.code, event.message)]
        self._sent.pop(item_id, None)
        error = {
            "type": "transcription_error",
            "code": event.code,
            "message": event.message,
            "param": None,
        }
        return [
            server_event(f"{TRANSCRIPTION}.failed", item_id=item_id, content_index=0, error=error)
        ]
