"""The local backend's rule for retrying a batched final alone, with the temperature fallback,
and the encoder window each final gets."""

import dataclasses

from server.backends.local import FasterWhisperTranscriber, _needs_fallback
from server.core.transcription import DecodeOptions, Segment


def segment(avg_logprob=-0.3, compression_ratio=1.5, no_speech_prob=0.1):
    return Segment(
        text=" words",
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
