import itertools

import srt
import webvtt

from server.core import formats
from server.core.transcription import Segment, Transcription, Word


def test_timestamps_follow_srt_and_vtt():
    assert formats.timestamp(3725.0456, ",") == "01:02:05,046"
    assert formats.timestamp(0.0, ".") == "00:00:00.000"


def long_segment() -> Segment:
    words = tuple(Word(f"word{i}", i * 0.5, i * 0.5 + 0.4) for i in range(40))
    text = " " + " ".join(w.word for w in words)
    return Segment(text=text, start_s=0.0, end_s=20.0, words=words)


def test_long_segments_become_readable_cues_at_word_boundaries():
    cues = formats.cues([long_segment()])
    assert len(cues) > 2
    for cue in cues:
        assert cue.end_s - cue.start_s <= formats.MAX_CUE_S + 0.5
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= formats.MAX_CUE_CHARS for line in lines)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == long_segment().text.strip()


def test_segments_without_word_times_are_split_in_proportion():
    segment = Segment(text=" " + "abc " * 60, start_s=10.0, end_s=40.0)
    cues = formats.cues([segment])
    assert len(cues) > 1 and cues[0].start_s == 10.0 and cues[-1].end_s == 40.0
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(cues))


def test_srt_and_vtt_round_trip_through_real_parsers():
    transcription = Transcription(segments=(long_segment(),), language="en")
    parsed = list(srt.parse(formats.as_srt(transcription)))
    assert [c.index for c in parsed] == list(range(1, len(parsed) + 1))
    captions = webvtt.from_string(formats.as_vtt(transcription))
    assert len(captions) == len(parsed)


def test_verbose_json_shape():
    transcription = Transcription(
        segments=(Segment(text=" Hi.", start_s=0.0, end_s=1.0, tokens=(1, 2), seek=0),),
        language="de",
    )
    body = formats.as_verbose_json(transcription, task="translate", duration_s=1.2, words=False)
    assert body["task"] == "translate" and body["language"] == "german"
    assert body["usage"] == {"type": "duration", "seconds": 2}
    assert set(body["segments"][0]) == {
        "id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
        "compression_ratio", "no_speech_prob",
    }  # fmt: skip
    assert "words" not in body
