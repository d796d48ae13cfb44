"""A room's transcript: placed by the speakers' start of speech, once each, and its files."""

from __future__ import annotations

import io

import pytest
import webvtt

from server.core.errors import InvalidMessage
from server.core.room import RoomTranscript, as_srt, as_text, as_vtt, check_speaker, room_final


def final(session: str, utterance: int, start_ms: int, end_ms: int, text: str, **extra):
    return {
        "type": "transcript.final",
        "session_id": session,
        "utterance_id": utterance,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "text": text,
        **extra,
    }


def test_a_final_that_arrives_late_is_placed_by_its_start():
    transcript = RoomTranscript()
    # Bob joined 2 s after the room opened; Alice at once. Bob's short utterance ends first.
    assert transcript.add(room_final("Bob", 2000, final("b", 1, 500, 1500, "Yes.")))
    assert transcript.add(room_final("Alice", 0, final("a", 1, 1000, 6000, "A long point.")))
    assert [f.speaker for f in transcript.finals] == ["Alice", "Bob"]
    assert [f.start_ms for f in transcript.finals] == [1000, 2500]


def test_each_final_once_and_no_empty_ones():
    transcript = RoomTranscript()
    assert transcript.add(room_final("Alice", 0, final("a", 1, 0, 900, "Hello.")))
    assert not transcript.add(room_final("Alice", 0, final("a", 1, 0, 900, "Hello.")))
    assert not transcript.add(room_final("Alice", 0, final("a", 2, 1000, 1500, " ")))
    assert len(transcript.finals) == 1


def test_files_label_the_speaker_and_time_cues_by_words():
    transcript = RoomTranscript()
    words = [
        {"word": "Fish", "start_ms": 300, "end_ms": 600, "probability": 0.9},
        {"word": "&", "start_ms": 600, "end_ms": 700, "probability": 0.8},
        {"word": "<chips>", "start_ms": 700, "end_ms": 1200, "probability": 0.7},
    ]
    transcript.add(room_final("Alice", 1000, final("a", 1, 0, 1500, "Fish & <chips>", words=words)))
    transcript.add(room_final("Bob", 0, final("b", 1, 3000, 4000, "Agreed.")))
    assert as_text(transcript.finals) == "Alice: Fish & <chips>\nBob: Agreed.\n"
    assert "00:00:01,300 --> 00:00:02,200\nAlice: Fish & <chips>" in as_srt(transcript.finals)
    captions = webvtt.from_buffer(io.StringIO(as_vtt(transcript.finals)))
    assert [(c.voice, c.start, c.end) for c in captions] == [
        ("Alice", "00:00:01.300", "00:00:02.200"),
        ("Bob", "00:00:03.000", "00:00:04.000"),
    ]
    assert "Fish &amp; &lt;chips&gt;" in as_vtt(transcript.finals)


@pytest.mark.parametrize("name", ["", "<v>", "a" * 41, " -dash", "Al\nice"])
def test_speaker_names_that_captions_cannot_carry_are_refused(name):
    with pytest.raises(InvalidMessage) as refused:
        check_speaker(name)
    assert refused.value.code == "invalid_speaker"


def test_speaker_names_with_letters_of_any_script_are_kept():
    assert check_speaker(" Zoë O'Brien-Łukasz ") == "Zoë O'Brien-Łukasz"
    assert check_speaker("李明") == "李明"
