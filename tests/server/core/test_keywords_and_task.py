"""Session options of meetings: keywords (hotwords, never echoed on silence), translation, and
words in finals."""

from __future__ import annotations

import pytest

from server.core.errors import InvalidMessage
from server.core.options import parse_options
from server.core.protocol import options_from_query
from server.core.quality import QualityThresholds, filter_transcription
from server.core.transcription import Segment, Transcription

KEYWORDS = "Abigail Claflin, Abbie"


def answer(text: str, no_speech_prob: float, avg_logprob: float) -> Transcription:
    return Transcription(
        segments=(Segment(text, no_speech_prob=no_speech_prob, avg_logprob=avg_logprob),)
    )


def test_keywords_read_back_from_a_window_without_speech_are_dropped():
    # base on five seconds of digital silence, given three names (as measured).
    said = answer(" Quilter, Quilter, Quilter", 0.39, -0.85)
    assert filter_transcription(said, QualityThresholds())[0] == "Quilter, Quilter, Quilter"
    names = "Wentworth, Dashwood, Quilter"
    assert filter_transcription(said, QualityThresholds(), names) == ("", "keyword_echo")


def test_keywords_said_in_speech_are_kept():
    confident = answer(" I'm Abigail Claflin.", 0.01, -0.2)
    assert (
        filter_transcription(confident, QualityThresholds(), KEYWORDS)[0] == "I'm Abigail Claflin."
    )
    alone = answer(" Claflin.", 0.02, -0.3)  # a confident answer of the keyword alone
    assert filter_transcription(alone, QualityThresholds(), KEYWORDS)[0] == "Claflin."


def test_keywords_come_as_a_list_or_comma_separated_and_are_bounded():
    assert options_from_query({"keywords": "Claflin, Quilter ,"}).keywords == ("Claflin", "Quilter")
    assert parse_options({"keywords": ["Dashwood"]}).keywords == ("Dashwood",)
    with pytest.raises(InvalidMessage, match="keywords"):
        parse_options({"keywords": ["x"] * 101})
    with pytest.raises(InvalidMessage, match="50 characters"):
        parse_options({"keywords": ["x" * 51]})


def test_words_are_asked_for_with_include_and_translation_with_task():
    assert options_from_query({"include": "words"}).wants_words
    assert parse_options({"word_timestamps": True}).wants_words
    assert not parse_options({}).wants_words
    assert parse_options({"task": "translate"}).task == "translate"
    with pytest.raises(InvalidMessage):
        parse_options({"include": ["logprobs"]})
    with pytest.raises(InvalidMessage):
        parse_options({"task": "summarize"})


def test_a_dropped_segment_gives_no_words():
    from server.core.quality import kept_words
    from server.core.transcription import Word

    spoken = Segment(" Hello there.", avg_logprob=-0.2, words=(Word("Hello", 0.0, 0.4),))
    invented = Segment(
        " Thank you.", no_speech_prob=0.9, avg_logprob=-0.8, words=(Word("Thank", 5.0, 5.2),)
    )
    words = kept_words(Transcription(segments=(spoken, invented)), QualityThresholds())
    assert [word.word for word in words] == ["Hello"]
