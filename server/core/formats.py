"""Transcriptions rendered the way OpenAI's audio API returns them: pure functions.

json, text, srt, vtt and verbose_json, and the cues of SRT and WebVTT: a long segment is split
into cues of at most two lines of ``LINE_CHARS`` characters and ``MAX_CUE_S`` seconds, at word
boundaries (with word timestamps where the model gave them, in proportion to characters
otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from server.core.languages import language_name
from server.core.transcription import Segment, Transcription, Word

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
LINE_CHARS = 42
MAX_CUE_CHARS = 2 * LINE_CHARS
MAX_CUE_S = 7.0


@dataclass(frozen=True, slots=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def usage(duration_s: float) -> dict[str, Any]:
    """Whisper-style usage: billed seconds of audio, rounded up."""
    return {"type": "duration", "seconds": math.ceil(duration_s)}


def as_json(transcription: Transcription, duration_s: float) -> dict[str, Any]:
    return {"text": transcription.text, "usage": usage(duration_s)}


def logprobs(transcription: Transcription) -> list[dict[str, Any]]:
    """``include[]=logprobs``: one entry per word Whisper decoded, with the log of the word's
    probability (the mean probability of its tokens). Needs word timestamps in the decode."""
    return [
        {
            "token": word.word,
            "logprob": math.log(max(word.probability, 1e-12)),
            "bytes": list(word.word.encode()),
        }
        for segment in transcription.segments
        for word in segment.words
    ]


def as_text(transcription: Transcription) -> str:
    return transcription.text + "\n"


def as_verbose_json(
    transcription: Transcription,
    *,
    task: str,
    duration_s: float,
    words: bool,
    segments: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(transcription.language),
        "duration": round(duration_s, 3),
        "text": transcription.text,
    }
    if segments:
        body["segments"] = [
            _segment_json(index, segment) for index, segment in enumerate(transcription.segments)
        ]
    if words:
        body["words"] = [
            {
                "word": word.word.strip(),
                "start": round(word.start_s, 3),
                "end": round(word.end_s, 3),
            }
            for segment in transcription.segments
            for word in segment.words
        ]
    body["usage"] = usage(duration_s)
    return body


def _segment_json(index: int, segment: Segment) -> dict[str, Any]:
    return {
        "id": index,
        "seek": segment.seek,
        "start": round(segment.start_s, 3),
        "end": round(segment.end_s, 3),
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def as_srt(transcription: Transcription) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    blocks = [
        f"{number}\n{timestamp(cue.start_s, ',')} --> {timestamp(cue.end_s, ',')}\n{cue.text}\n"
        for number, cue in enumerate(cues(transcription.segments), start=1)
    ]
    return "\n".join(blocks)


def as_vtt(transcription: Transcription) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times."""
    blocks = [
        f"{timestamp(cue.start_s, '.')} --> {timestamp(cue.end_s, '.')}\n{cue.text}\n"
        for cue in cues(transcription.segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def timestamp(seconds: float, decimal_marker: str) -> str:
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{milliseconds:03d}"


def cues(segments: tuple[Segment, ...] | list[Segment]) -> list[Cue]:
    """Readable cues: each segment split where it is too long to read in one cue."""
    result: list[Cue] = []
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        words = list(segment.words) or _spread_words(segment)
        result.extend(_split(words, segment))
    return result


def _spread_words(segment: Segment) -> list[Word]:
    """Word times guessed in proportion to their characters when the model gave none."""
    tokens = segment.text.split()
    total_chars = sum(len(token) + 1 for token in tokens) or 1
    span = max(segment.end_s - segment.start_s, 0.0)
    words, elapsed = [], 0
    for token in tokens:
        start = segment.start_s + span * elapsed / total_chars
        elapsed += len(token) + 1
        words.append(Word(token, start, segment.start_s + span * elapsed / total_chars))
    return words


def _split(words: list[Word], segment: Segment) -> list[Cue]:
    result: list[Cue] = []
    current: list[Word] = []
    for word in words:
        candidate = [*current, word]
        too_long = len(_joined(candidate)) > MAX_CUE_CHARS
        too_slow = current and word.end_s - current[0].start_s > MAX_CUE_S
        if current and (too_long or too_slow):
            result.append(_cue(current))
            current = [word]
        else:
            current = candidate
    if current:
        result.append(_cue(current))
    if result:  # keep the segment's own outer edges
        result[0] = Cue(segment.start_s, result[0].end_s, result[0].text)
        result[-1] = Cue(result[-1].start_s, max(segment.end_s, result[-1].end_s), result[-1].text)
    return result


def _joined(words: list[Word]) -> str:
    return " ".join(word.word.strip() for word in words if word.word.strip())


def _cue(words: list[Word]) -> Cue:
    return Cue(words[0].start_s, words[-1].end_s, wrap(_joined(words)))


def wrap(text: str) -> str:
    """At most two lines of about ``LINE_CHARS``, broken at the space nearest the middle."""
    if len(text) <= LINE_CHARS:
        return text
    middle = len(text) // 2
    spaces = [index for index, char in enumerate(text) if char == " "]
    if not spaces:
        return text
    split_at = min(spaces, key=lambda index: abs(index - middle))
    return text[:split_at] + "\n" + text[split_at + 1 :]
