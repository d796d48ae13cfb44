"""Drops model output that is likely a hallucination rather than speech.

Whisper's known failures on streaming audio: text invented on silence or noise ("Thank you for
watching"), and repetition loops. Its own statistics flag most of them: the probability that a
window holds no speech, the average token log-probability, and how well the text compresses
(a loop compresses very well).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from server.core.transcription import (
    DecodeOptions,
    Segment,
    Transcription,
    Word,
    join_segment_texts,
)

# Phrases Whisper produces on silence and noise, learned from subtitle credits.
KNOWN_HALLUCINATIONS = frozenset(
    {
        "thank you",
        "thank you very much",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "like and subscribe",
        "subtitles by the amaraorg community",
        "you",
        "bye",
        "the end",
    }
)


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    no_speech_prob: float = 0.6
    # A segment the model calls silence is dropped when it is also less sure than this (Whisper
    # drops it only under ``min_avg_logprob``; a final is immutable, so it is stricter here).
    no_speech_avg_logprob: float = -0.5
    min_avg_logprob: float = -1.0
    max_compression_ratio: float = 2.4
    # Below this confidence a known hallucination phrase is dropped even with speech detected.
    suspicious_avg_logprob: float = -0.5
    suspicious_no_speech_prob: float = 0.2
    first_words_min_avg_logprob: float = -1.2

    def for_partials(self) -> QualityThresholds:
        """A partial's thresholds: Whisper's own no-speech rule. The VAD has heard speech, and
        the first partials hold a few hundred ms of it in a window of silence, which the model
        calls silence: tiny.en wrote "8", "1", "in", "Go for" with a no-speech probability of
        0.6-0.85 at log probabilities of -0.7 to -1.0, and the stricter rule kept those words
        back 0.1-0.4 s (benchmarks/first_words.py). A wrong partial is replaced a moment
        later; only words later partials agree on become stable."""
        return replace(self, no_speech_avg_logprob=self.min_avg_logprob)

    def for_first_words(self) -> QualityThresholds:
        """What a first-words partial (its utterance has no sure words yet) may show when it
        fails ``for_partials``. On a few hundred ms of speech the model is less sure of words
        it has right: tiny.en wrote "10", "He", "this is it" at log probabilities of -1.01 to
        -1.16 one or two partials before it passed -1.0 (benchmarks/first_words.py). Such
        words are shown but never vote in the agreement; the next partial replaces them."""
        return replace(self.for_partials(), min_avg_logprob=self.first_words_min_avg_logprob)


def _normalized(text: str) -> str:
    return re.sub(r"[^\w ]+", "", text.lower()).strip()


def keyword_words(hotwords: str) -> frozenset[str]:
    """The words of a session's keywords (``DecodeOptions.hotwords``), normalised."""
    return frozenset(_normalized(hotwords).split())


# A phrase of the prompt said back: base wrote "Eight of spades, five of hearts." as the first
# partial of 0.57 s of room noise before the digits file, right after the final "Eight of
# spades, four of clothes, seven of hearts." (no-speech probability 0.77, log probability
# -0.78: Whisper's own rule lets it through). An echo has at least four words, three of them
# in a row as in the prompt, and more than three quarters of them words of the prompt. Shorter
# repeats are speech: "this is all" began both "this is all very high pitched" and, a few
# seconds later, "this is all very whispered".
ECHO_MIN_WORDS = 4
ECHO_MIN_RUN = 3
ECHO_MIN_SHARE = 0.75


def echoes_prompt(text: str, prompt: str) -> bool:
    """Whether ``text`` is mostly words of ``prompt``, with a run of ``ECHO_MIN_RUN`` of them
    in the prompt's order."""
    words = _normalized(text).split()
    prompt_words = _normalized(prompt).split()
    if len(words) < ECHO_MIN_WORDS or len(prompt_words) < ECHO_MIN_RUN:
        return False
    known = set(prompt_words)
    if sum(word in known for word in words) <= ECHO_MIN_SHARE * len(words):
        return False
    prompt_runs = {
        tuple(prompt_words[start : start + ECHO_MIN_RUN])
        for start in range(len(prompt_words) - ECHO_MIN_RUN + 1)
    }
    return any(
        tuple(words[start : start + ECHO_MIN_RUN]) in prompt_runs
        for start in range(len(words) - ECHO_MIN_RUN + 1)
    )


def segment_problem(
    segment: Segment,
    thresholds: QualityThresholds,
    keywords: frozenset[str] = frozenset(),
    prompt: str = "",
) -> str | None:
    """Why a segment should be dropped, or None to keep it. A segment made only of the
    session's keywords, from a window that may hold no speech, is the model reading its
    keywords back: base said "Quilter, Quilter, Quilter" on five seconds of digital silence
    when given three names (no-speech probability 0.39, which the other rules let through).
    A doubtful segment that repeats its ``prompt`` is the same failure (``echoes_prompt``)."""
    if segment.compression_ratio > thresholds.max_compression_ratio:
        return "repetition"
    if (
        segment.no_speech_prob > thresholds.no_speech_prob
        and segment.avg_logprob < thresholds.no_speech_avg_logprob
    ):
        return "no_speech"
    if segment.avg_logprob < thresholds.min_avg_logprob:
        return "low_confidence"
    suspicious = (
        segment.avg_logprob < thresholds.suspicious_avg_logprob
        or segment.no_speech_prob > thresholds.suspicious_no_speech_prob
    )
    if suspicious and _normalized(segment.text) in KNOWN_HALLUCINATIONS:
        return "known_hallucination"
    words = set(_normalized(segment.text).split())
    if suspicious and keywords and words and words <= keywords:
        return "keyword_echo"
    if suspicious and echoes_prompt(segment.text, prompt):
        return "prompt_echo"
    return None


def filter_transcription(
    transcription: Transcription,
    thresholds: QualityThresholds,
    hotwords: str = "",
    prompt: str = "",
) -> tuple[str, str | None]:
    """The text of the segments worth keeping, and why the rest was dropped (if any was).
    ``hotwords`` and ``prompt`` are what the request gave the model: text it may say back."""
    kept: list[str] = []
    reasons: list[str] = []
    keywords = keyword_words(hotwords)
    for segment in transcription.segments:
        problem = segment_problem(segment, thresholds, keywords, prompt)
        if problem is None:
            kept.append(segment.text)
        else:
            reasons.append(problem)
    return join_segment_texts(kept), (",".join(sorted(set(reasons))) or None)


def filter_answer(
    answer: Transcription, thresholds: QualityThresholds, options: DecodeOptions
) -> tuple[str, str | None]:
    """``filter_transcription`` of a request's answer, given the keywords and prompt it sent."""
    return filter_transcription(answer, thresholds, options.hotwords, options.prompt)


def kept_words(
    transcription: Transcription,
    thresholds: QualityThresholds,
    hotwords: str = "",
    prompt: str = "",
) -> tuple[Word, ...]:
    """The words of the segments ``filter_transcription`` keeps: a dropped hallucination's
    words must not time a caption either."""
    keywords = keyword_words(hotwords)
    return tuple(
        word
        for segment in transcription.segments
        if segment_problem(segment, thresholds, keywords, prompt) is None
        for word in segment.words
    )


# A partial decodes a few seconds greedily: on laughter or a drawn-out word it loops on a short
# phrase ("Montreal Montreal Montreal") long before the text is long enough for the compression
# ratio to catch it, and three such partials would make the loop stable, so the final would
# keep it. Three repeats of one to three words in a row are a loop.
LOOP_REPEATS = 3
LOOP_MAX_WORDS = 3


def ends_in_a_loop(text: str) -> bool:
    """Whether the text ends with a phrase (a word or more) twice in a row: what Whisper
    writes when it loops to the end of its window ("Cares. Cares"), and now and then what was
    said ("ha ha"). A repeat inside the text ("one zero zero zero one") is speech."""
    keys = [key for key in (_normalized(word) for word in text.split()) if key]
    return any(
        keys[len(keys) - 2 * size : len(keys) - size] == keys[len(keys) - size :]
        for size in range(1, len(keys) // 2 + 1)
    )


def cut_repetition_loop(text: str) -> str:
    """A partial's text up to where it starts looping (the phrase kept once)."""
    words = text.split()
    keys = [_normalized(word) for word in words]
    for start in range(len(words)):
        for size in range(1, LOOP_MAX_WORDS + 1):
            phrase = keys[start : start + size]
            if len(phrase) < size or not all(phrase):
                break
            repeats = 1
            while keys[start + repeats * size : start + (repeats + 1) * size] == phrase:
                repeats += 1
            if repeats >= LOOP_REPEATS:
                return " ".join(words[: start + size])
    return text
