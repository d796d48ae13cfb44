"""The interface every speech backend implements."""

from __future__ import annotations

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
