"""A caption file (SRT, WebVTT or plain text) kept valid at every moment: each final rewrites it
whole through a temporary file and an atomic rename, so a reader (a video player, a tail, a
crash) never sees half a cue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from server.core import formats
from server.core.transcription import Segment, Transcription

SUFFIXES = {".srt": "srt", ".vtt": "vtt", ".txt": "text"}


class CaptionFile:
    def __init__(self, path: Path) -> None:
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path}: captions are written as .srt, .vtt or .txt")
        self.path = path
        self.kind = kind
        self._finals: dict[int, dict[str, Any]] = {}
        self._write()

    def add_final(self, event: dict[str, Any]) -> None:
        if event["utterance_id"] in self._finals:
            return  # finals are idempotent by id
        self._finals[event["utterance_id"]] = event
        self._write()

    def render(self) -> str:
        finals = [self._finals[key] for key in sorted(self._finals)]
        segments = tuple(
            Segment(
                text=" " + final["text"].strip(),
                start_s=final["start_ms"] / 1000,
                end_s=final["end_ms"] / 1000,
            )
            for final in finals
            if final["text"].strip()
        )
        transcription = Transcription(segments=segments)
        if self.kind == "srt":
            return formats.as_srt(transcription)
        if self.kind == "vtt":
            return formats.as_vtt(transcription)
        return "\n".join(segment.text.strip() for segment in segments) + ("\n" if segments else "")

    def _write(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.partial")
        temporary.write_text(self.render(), encoding="utf-8")
        os.replace(temporary, self.path)
