"""The interface every speech backend implements."""

from __future__ import annotations

from typing import Protocol

from server.transcription import DecodeOptions, Samples, Transcription


class Transcriber(Protocol):
    """A loaded speech model. ``transcribe`` blocks; the scheduler runs it in worker threads."""

    name: str
    multilingual: bool

    def load(self) -> None:
        """Load and warm up the model (blocking; may take seconds)."""
        ...

    def transcribe(
        self, audio: Samples, options: DecodeOptions, *, final: bool = True
    ) -> Transcription:
        """Transcribe 16 kHz float32 audio. ``final=False`` may trade accuracy for speed.

        Raises ``server.errors.BackendError`` when the model fails.
        """
        ...
