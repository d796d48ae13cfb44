"""What the core asks a speech model for, and what a model answers. Plain data, no model code."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.core.units import samples_to_seconds

Samples = npt.NDArray[np.float32]

# Sent by StreamScribe's remote backend with its partial requests. A StreamScribe serving as the
# remote runs them as partials (greedy, behind finals); other servers ignore the header.
PRIORITY_HEADER = "X-StreamScribe-Priority"


class RequestKind(enum.IntEnum):
    """Lower values are served first: a final never waits behind a partial."""

    FINAL = 0
    PARTIAL = 1


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How to decode one request; backends map these onto their own parameters."""

    language: str | None = None
    prompt: str = ""
    # How many trailing characters of ``prompt`` are text carried from earlier finals: a
    # backend may drop its oldest words to fit a batch. The rest (the client's own prompt or
    # glossary) is kept whole.
    carried_prompt_chars: int = 0
    task: str = "transcribe"
    # Names and jargon the model should spell right (faster-whisper's ``hotwords``): kept apart
    # from ``prompt``, so carried text never pushes them out and a batch never cuts them.
    hotwords: str = ""
    temperature: float = 0.0
    # Which backend serves partials where there are two (a remote and a local model):
    # "auto", "remote" or "local". Finals always go to the primary backend.
    partial_backend: str = "auto"
    # Which backend serves the request where there are two: "primary" (the configured backend,
    # with its failover) or "local" (the local model beside a remote). From the alias table.
    backend: str = "primary"
    timestamps: bool = False  # segment start and end times (subtitles, verbose_json)
    word_timestamps: bool = False
    # A final whose audio ends in a pause (not cut while the speaker talked): a local model may
    # encode it on a short window (``final_window_s``), which at forced cuts lost words.
    ends_in_silence: bool = False
    # A final whose utterance's newest partial ended on a phrase said twice: on the short
    # window the final would end so too and be decoded again on 30 s ("words words words" of
    # the fast talk: 1.9 s on base), so it takes 30 s at once.
    partial_looped: bool = False
    # A partial of an utterance that shows no text yet. Given the previous finals as its
    # prompt, tiny.en calls a few hundred ms of new speech silence more often, so a local
    # model leaves the carried text out of these when asked (``first_words_prompt``).
    first_words: bool = False

    def prompt_parts(self) -> tuple[str, str]:
        """The prompt in two: the client's own (and glossary), then the carried finals."""
        prompt = self.prompt.strip()
        carried_chars = min(max(self.carried_prompt_chars, 0), len(prompt))
        split = len(prompt) - carried_chars
        return prompt[:split].strip(), prompt[split:].strip()


@dataclass(frozen=True, slots=True, eq=False)
class TranscribeRequest:
    """Command from the core: transcribe ``audio`` (16 kHz float32) with ``options``."""

    request_id: int
    session_id: str
    utterance_id: int
    kind: RequestKind
    audio: Samples
    options: DecodeOptions
    start_samples: int
    end_samples: int
    # One chunk of a long upload: never runs on the last free worker, which stays for live
    # finals and short requests.
    bulk: bool = False

    @property
    def duration_s(self) -> float:
        return samples_to_seconds(len(self.audio))


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded segment with the statistics the quality filter reads."""

    text: str
    start_s: float = 0.0
    end_s: float = 0.0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    temperature: float = 0.0
    seek: int = 0
    tokens: tuple[int, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """What a request cost: seconds of audio sent, and tokens where the backend counts them."""

    audio_seconds: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None

    def as_dict(self) -> dict[str, float | int]:
        wire: dict[str, float | int] = {"audio_seconds": round(self.audio_seconds, 3)}
        if self.input_tokens is not None:
            wire["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            wire["output_tokens"] = self.output_tokens
        return wire


@dataclass(frozen=True, slots=True)
class Transcription:
    """A model's answer to one request."""

    segments: tuple[Segment, ...]
    language: str | None = None
    language_probability: float = 0.0
    duration_s: float = 0.0
    backend: str = ""
    inference_ms: float = 0.0
    queue_ms: float = 0.0  # how long the request waited for a worker
    usage: Usage | None = None
    # Why the primary backend did not answer (the answer then comes from the fallback).
    failover_reason: str | None = None

    @property
    def text(self) -> str:
        return join_segment_texts(segment.text for segment in self.segments)


def join_segment_texts(texts: Iterable[str]) -> str:
    """Join segment texts the way Whisper emits them (each usually starts with a space)."""
    return "".join(texts).strip()
