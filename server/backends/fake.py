"""Backends that need no model: a scripted transcriber for tests and demos.

``ScriptedTranscriber`` answers from a list of texts, one per final, and gives partials the
leading words of the current text in proportion to the audio heard so far. With no script it
describes the audio ("speech of 1.2 seconds"), which lets anyone try the server without a model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from server.core.transcription import DecodeOptions, Samples, Segment, Transcription, Usage
from server.core.units import samples_to_seconds
from server.settings import ServerSettings


def build(settings: ServerSettings) -> ScriptedTranscriber:
    """The registry's builder for ``--backend fake``."""
    return ScriptedTranscriber(settings.fake_script)


class ScriptedTranscriber:
    name = "fake"
    multilingual = True

    def __init__(
        self,
        script: Sequence[str] = (),
        *,
        language: str = "en",
        delay_s: float = 0.0,
        words_per_second: float = 2.5,
    ) -> None:
        self.script = list(script)
        self.language = language
        self.delay_s = delay_s
        self.words_per_second = words_per_second
        self.requests: list[tuple[float, DecodeOptions]] = []
        self.batches: list[int] = []  # size of every batch it ran
        self._lock = threading.Lock()
        self._finals_served = 0

    def load(self) -> None:
        """Nothing to load."""

    @property
    def suggested_batch_size(self) -> int:
        return 1  # batches only when the operator asks for them

    def batch_key(self, audio: Samples, options: DecodeOptions, *, final: bool = False) -> object:
        return final  # partials batch with partials, finals with finals

    def transcribe_batch(
        self, items: Sequence[tuple[Samples, DecodeOptions]], *, final: bool = False
    ) -> list[Transcription]:
        """Several utterances in one call: one ``delay_s`` for the whole batch, as a model's
        batched call costs about one call's time."""
        started = time.perf_counter()
        with self._lock:
            self.batches.append(len(items))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._answer(audio, options, started, final=final) for audio, options in items]

    def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        started = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._answer(audio, options, started, final=final, on_segment=on_segment)

    def _answer(
        self,
        audio: Samples,
        options: DecodeOptions,
        started: float,
        *,
        final: bool,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        duration_s = samples_to_seconds(len(audio))
        with self._lock:
            self.requests.append((duration_s, options))
            index = self._finals_served
            if final:
                self._finals_served += 1
        if self.script:
            text = self.script[min(index, len(self.script) - 1)]
            if not final:
                words = text.split()
                text = " ".join(words[: int(duration_s * self.words_per_second)])
        else:
            text = f"speech of {duration_s:.1f} seconds"
        segments = (Segment(text=" " + text, end_s=duration_s),) if text else ()
        for segment in segments:
            if on_segment is not None:
                on_segment(segment)
        return Transcription(
            segments=segments,
            language=options.language or self.language,
            language_probability=1.0,
            duration_s=duration_s,
            backend=self.name,
            inference_ms=(time.perf_counter() - started) * 1000,
            usage=Usage(audio_seconds=duration_s),
        )
