"""The local backend's rule for retrying a batched final alone, with the temperature fallback,
and the encoder window each final gets."""

import dataclasses

import numpy as np
import pytest

from server.backends.local import (
    LOOP_RETRY_EXTRA_S,
    FasterWhisperTranscriber,
    _needs_fallback,
    _Retry,
    _why_decode_again,
)
from server.core.transcription import DecodeOptions, Segment, Transcription


def segment(avg_logprob=-0.3, compression_ratio=1.5, no_speech_prob=0.1, text=" words"):
    return Segment(
        text=text,
        avg_logprob=avg_logprob,
        compression_ratio=compression_ratio,
        no_speech_prob=no_speech_prob,
    )


def test_a_confident_plain_answer_is_kept():
    assert not _needs_fallback(segment())


def test_a_repetitive_or_unsure_answer_is_retried():
    assert _needs_fallback(segment(compression_ratio=2.6))
    assert _needs_fallback(segment(avg_logprob=-1.4))


def test_an_unsure_answer_on_silence_is_not_retried():
    """Whisper's rule: nothing to gain from retrying what the model calls silence."""
    assert not _needs_fallback(segment(avg_logprob=-1.4, no_speech_prob=0.9))


def test_a_final_takes_the_short_window_only_after_a_pause_and_no_loop():
    backend = FasterWhisperTranscriber("tiny.en", final_window_s=10, partial_window_s=8)
    paused = DecodeOptions(ends_in_silence=True)
    looped = dataclasses.replace(paused, partial_looped=True)
    assert backend._window_s(True, [paused]) == 10
    assert backend._window_s(True, [DecodeOptions()]) is None  # cut while the speaker talked
    assert backend._window_s(True, [looped]) is None
    assert backend._window_s(True, [paused, looped]) is None  # one call, one window
    assert backend._window_s(False, [looped]) == 8  # partials keep theirs


def test_the_cores_are_shared_out_among_the_workers(monkeypatch):
    """Calls that run at once never ask for more threads than the machine has cores."""
    from server.backends import local

    monkeypatch.setattr(local.os, "cpu_count", lambda: 16)
    assert [local.default_cpu_threads(w) for w in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    monkeypatch.setattr(local.os, "cpu_count", lambda: None)
    assert local.default_cpu_threads(2) == 1


def test_why_a_final_is_decoded_again():
    plain, twice = segment(), segment(text=" some words, words")
    assert _why_decode_again(plain, 10.0, cut_short=False, loops_by_text=True) is None
    assert _why_decode_again(plain, 10.0, cut_short=True, loops_by_text=True) is _Retry.LOOPED
    assert _why_decode_again(segment(avg_logprob=-1.4), 10.0, False, True) is _Retry.UNSURE
    assert _why_decode_again(twice, 10.0, cut_short=False, loops_by_text=True) is _Retry.LOOPED
    # On the longer window a phrase said twice is taken as said; the budget still judges.
    assert _why_decode_again(twice, 15.0, cut_short=False, loops_by_text=False) is None
    assert _why_decode_again(twice, 15.0, cut_short=True, loops_by_text=False) is _Retry.LOOPED
    # On Whisper's 30 s the text is not judged for loops at all.
    assert _why_decode_again(twice, None, cut_short=False, loops_by_text=True) is None


class ScriptedDecoder:
    """Stands in for the encoder and decoder: answers each call from a script, and records the
    window and loop rule it was called with."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []
        self.window_samples = 480_000

    def transcribe(self, items, *, beam_size, final, window_s=None, loops_by_text=True):
        self.calls.append((window_s, loops_by_text))
        return [self.answers.pop(0) for _ in items]

    def window_s(self, audio, window_s):
        return max(window_s, len(audio) / 16_000 + 1.0)

    def prompt_shape(self, options, *, final):
        return (0, False, 0)


def backend_with(decoder, monkeypatch):
    backend = FasterWhisperTranscriber("tiny.en", final_window_s=10)
    backend._model = object()
    backend._batched = decoder
    padded = []

    def whisper_30s(audio, options, *, final, on_segment=None):
        padded.append(final)
        return Transcription(segments=(), backend="local")

    monkeypatch.setattr(backend, "_transcribe_padded", whisper_30s)
    return backend, padded


AUDIO = np.zeros(16_000 * 3, dtype=np.float32)
PAUSED = DecodeOptions(language="en", ends_in_silence=True)
SAID = Transcription(segments=(segment(),), backend="local")


def test_a_final_that_loops_on_the_short_window_gets_a_longer_one(monkeypatch):
    decoder = ScriptedDecoder(_Retry.LOOPED, SAID)
    backend, padded = backend_with(decoder, monkeypatch)
    assert backend.transcribe(AUDIO, PAUSED) is SAID
    assert decoder.calls == [(10, True), (10 + LOOP_RETRY_EXTRA_S, False)]
    assert padded == []


def test_a_final_that_loops_again_or_is_unsure_takes_whispers_30_s(monkeypatch):
    decoder = ScriptedDecoder(_Retry.LOOPED, _Retry.LOOPED)
    backend, padded = backend_with(decoder, monkeypatch)
    backend.transcribe(AUDIO, PAUSED)
    assert len(decoder.calls) == 2 and padded == [True]

    decoder = ScriptedDecoder(_Retry.UNSURE)
    backend, padded = backend_with(decoder, monkeypatch)
    backend.transcribe(AUDIO, PAUSED)
    assert decoder.calls == [(10, True)] and padded == [True]  # no longer window for doubt


def test_a_final_whose_partial_looped_starts_on_the_longer_window(monkeypatch):
    decoder = ScriptedDecoder(SAID)
    backend, padded = backend_with(decoder, monkeypatch)
    looped = dataclasses.replace(PAUSED, partial_looped=True)
    assert backend.transcribe(AUDIO, looped) is SAID
    assert decoder.calls == [(10 + LOOP_RETRY_EXTRA_S, False)] and padded == []
    # Cut while the speaker talked: Whisper's 30 s, as every such final.
    backend.transcribe(AUDIO, dataclasses.replace(looped, ends_in_silence=False))
    assert padded == [True]


def test_first_words_leave_the_carried_prompt_out_only_when_asked():
    """With ``first_words_prompt="client"`` an utterance's partials before it shows text
    decode without the previous finals; by default they carry them, as every request does.
    The client's own prompt always stays."""
    carried = "and the earlier finals."
    first = DecodeOptions(
        prompt=f"Glossary: Quilter. {carried}", carried_prompt_chars=len(carried), first_words=True
    )
    later = dataclasses.replace(first, first_words=False)
    client = FasterWhisperTranscriber("tiny.en", first_words_prompt="client")
    assert client.as_decoded(first).prompt == "Glossary: Quilter."
    assert client.as_decoded(first).carried_prompt_chars == 0
    assert client.as_decoded(later) == later
    assert FasterWhisperTranscriber("tiny.en").as_decoded(first) == first
    assert FasterWhisperTranscriber("base").as_decoded(first) == first


def test_the_first_words_prompt_comes_from_the_settings():
    from pydantic import ValidationError

    from server.backends.local import build
    from server.settings import ServerSettings

    assert build(ServerSettings(model="tiny.en")).first_words_carry_prompt
    settings = ServerSettings(model="tiny.en", first_words_prompt="client")
    assert not build(settings).first_words_carry_prompt
    with pytest.raises(ValidationError):
        ServerSettings(first_words_prompt="auto")
