"""Events the session core emits for the edge to send or act on. Positions are 16 kHz samples."""

from __future__ import annotations

from dataclasses import dataclass

from server.core.transcription import TranscribeRequest, Usage, Word


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    utterance_id: int
    start_samples: int


@dataclass(frozen=True, slots=True)
class UtteranceStopped:
    utterance_id: int
    start_samples: int
    end_samples: int
    reason: str  # "silence", "max_duration", "commit" or "end_of_stream"


@dataclass(frozen=True, slots=True)
class PartialText:
    utterance_id: int
    text: str
    stable_text: str
    start_samples: int
    end_samples: int
    backend: str = ""


@dataclass(frozen=True, slots=True)
class FinalText:
    utterance_id: int
    text: str
    start_samples: int
    end_samples: int
    reason: str
    language: str | None
    prompt: str
    backend: str
    inference_ms: float
    dropped: str | None = None  # why model output was discarded as a likely hallucination
    usage: Usage | None = None
    failover_reason: str | None = None  # why the primary backend did not answer
    retried: bool = False  # answered after the client asked to retry a failed utterance
    words: tuple[Word, ...] = ()  # with ``word_timestamps``: the model's words, times, odds


@dataclass(frozen=True, slots=True)
class UtteranceCleared:
    """The client discarded the utterance in progress: it gets no final."""

    utterance_id: int


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """An earlier request's answer is no longer wanted (speech resumed after a pause)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class SessionError:
    code: str
    message: str
    utterance_id: int | None = None


@dataclass(frozen=True, slots=True)
class SessionDrained:
    """The stream has ended and every utterance has its final: the session may close."""


Event = (
    UtteranceStarted
    | UtteranceStopped
    | UtteranceCleared
    | PartialText
    | FinalText
    | RequestCancelled
    | SessionError
    | SessionDrained
    | TranscribeRequest
)
