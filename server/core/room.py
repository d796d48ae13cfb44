"""A meeting room's shared transcript: every participant's finals, labelled with their speaker
and placed on the room's clock, and the files made from it. Pure data, no I/O.

Room time is milliseconds since the room was created. A speaker's stream time 0 is the moment
their session joined the room (the edge measures it), so a final at ``start_ms`` of its session
starts at ``joined_at_ms + start_ms`` in room time.

Order: finals are placed by their start in room time, then speaker, then session and
utterance (a total order, so every viewer and every file agrees). A final that arrives after a
later-starting one is still placed by its start: finals come when each speaker pauses, so a
long utterance's final can arrive after a short one that began later.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from server.core.errors import InvalidMessage
from server.core.formats import timestamp, wrap

SPEAKER_NAME = re.compile(r"[\w][\w .'\-]{0,39}")
TRANSCRIPT_FORMATS = ("json", "txt", "srt", "vtt")


def check_speaker(name: str) -> str:
    """A speaker's name as it appears in captions: 1-40 letters, digits, spaces, ``.'-_``
    (nothing a caption format would read as markup)."""
    name = name.strip()
    if not SPEAKER_NAME.fullmatch(name):
        raise InvalidMessage(
            "speaker must be 1-40 letters, digits, spaces or . ' - _ (starting with a letter "
            "or digit)",
            code="invalid_speaker",
        )
    return name


@dataclass(frozen=True, slots=True)
class RoomWord:
    word: str
    start_ms: int  # room time
    end_ms: int
    probability: float


@dataclass(frozen=True, slots=True)
class RoomFinal:
    speaker: str
    session_id: str
    utterance_id: int
    start_ms: int  # room time
    end_ms: int
    text: str
    language: str | None = None
    words: tuple[RoomWord, ...] = ()

    @property
    def order(self) -> tuple[int, str, str, int]:
        return (self.start_ms, self.speaker, self.session_id, self.utterance_id)

    def message(self) -> dict[str, Any]:
        """How a viewer gets it (``transcript.final`` with the speaker and room times)."""
        body: dict[str, Any] = {
            "type": "transcript.final",
            "speaker": self.speaker,
            "session_id": self.session_id,
            "utterance_id": self.utterance_id,
            "room_start_ms": self.start_ms,
            "room_end_ms": self.end_ms,
            "text": self.text,
            "language": self.language,
        }
        if self.words:
            body["words"] = [
                {
                    "word": word.word,
                    "start_ms": word.start_ms,
                    "end_ms": word.end_ms,
                    "probability": round(word.probability, 4),
                }
                for word in self.words
            ]
        return body


def room_final(speaker: str, joined_at_ms: int, final: dict[str, Any]) -> RoomFinal:
    """A session's ``transcript.final`` message placed on the room's clock."""
    words = tuple(
        RoomWord(
            str(word["word"]).strip(),
            joined_at_ms + int(word["start_ms"]),
            joined_at_ms + int(word["end_ms"]),
            float(word.get("probability", 1.0)),
        )
        for word in final.get("words", ())
    )
    return RoomFinal(
        speaker=speaker,
        session_id=str(final["session_id"]),
        utterance_id=int(final["utterance_id"]),
        start_ms=joined_at_ms + int(final["start_ms"]),
        end_ms=joined_at_ms + int(final["end_ms"]),
        text=str(final["text"]),
        language=final.get("language"),
        words=words,
    )


@dataclass
class RoomTranscript:
    """The room's finals in order; each added once."""

    finals: list[RoomFinal] = field(default_factory=list)
    _seen: set[tuple[str, int]] = field(default_factory=set)

    def add(self, final: RoomFinal) -> bool:
        """Place ``final``; False when that utterance's final is already here."""
        key = (final.session_id, final.utterance_id)
        if key in self._seen or not final.text.strip():
            return False
        self._seen.add(key)
        bisect.insort(self.finals, final, key=lambda item: item.order)
        return True


def as_json(name: str, finals: list[RoomFinal]) -> dict[str, Any]:
    return {"name": name, "finals": [final.message() for final in finals]}


def as_text(finals: list[RoomFinal]) -> str:
    return "".join(f"{final.speaker}: {final.text.strip()}\n" for final in finals)


def as_srt(finals: list[RoomFinal]) -> str:
    blocks = [
        f"{number}\n{_times(final, ',')}\n{wrap(f'{final.speaker}: {final.text.strip()}')}\n"
        for number, final in enumerate(finals, start=1)
    ]
    return "\n".join(blocks)


def as_vtt(finals: list[RoomFinal]) -> str:
    """WebVTT with a voice span per cue (``<v Alice>``), so players label the speaker."""
    blocks = [
        f"{_times(final, '.')}\n<v {final.speaker}>{_escape(final.text.strip())}</v>\n"
        for final in finals
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _times(final: RoomFinal, marker: str) -> str:
    start_ms, end_ms = final.start_ms, final.end_ms
    if final.words:  # the words say where speech really was, without the padding
        start_ms, end_ms = final.words[0].start_ms, final.words[-1].end_ms
    start_s, end_s = start_ms / 1000, max(end_ms, start_ms + 1) / 1000
    return f"{timestamp(start_s, marker)} --> {timestamp(end_s, marker)}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
