"""The interface every speech backend implements."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Protocol

from server.transcription import DecodeOptions, Samples, Segment, Transcription

SegmentCallback = Callable[[Segment], None]


class Transcriber(Protocol):
    """A loaded speech model. ``transcribe`` blocks; the scheduler runs it in worker threads."""

    name: str
    multilingual: bool

    def load(self) -> None:
        """Load and warm up the model (blocking; may take seconds)."""
        ...

    def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe 16 kHz float32 audio. ``final=False`` may trade accuracy for speed.

        ``on_segment`` is called (in the calling thread) with each segment as soon as it is
        decoded, before the whole answer is ready: that is what streamed responses send.

        Raises ``server.errors.BackendError`` when the model fails.
        """
        ...


class AsyncTranscriber(Protocol):
    """A backend whose calls wait on the network, not the CPU (the remote API): the scheduler
    awaits it on the event loop, up to ``max_concurrency`` requests at once."""

    name: str
    multilingual: bool
    max_concurrency: int
    # Which backends may serve a session's partials ("remote", "local").
    partial_backends: tuple[str, ...]

    @property
    def streams_partials(self) -> bool:
        """Whether partial requests report text through ``on_segment`` before they finish."""
        ...

    async def start(self) -> None:
        """Connect and check the configuration; ``UsageError`` when it cannot work."""
        ...

    async def close(self) -> None: ...

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """As ``Transcriber.transcribe``, awaited; ``on_segment`` runs on the event loop."""
        ...


AnyTranscriber = Transcriber | AsyncTranscriber


def is_async(transcriber: AnyTranscriber) -> bool:
    return inspect.iscoroutinefunction(transcriber.transcribe)
