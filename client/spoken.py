"""Spoken punctuation and editing commands for voice typing. Pure: finals in, edits out.

    said                          typed
    ----------------------------  ------------------------------------------------------
    "comma", "period", "full      the mark, attached to the word before it (Whisper's own
    stop", "question mark",       punctuation around the command word is dropped)
    "exclamation mark/point",
    "colon", "semicolon"
    "new line"                    a line break; the next word starts with a capital
    "new paragraph"               a blank line; the next word starts with a capital
    "scratch that"                deletes what this utterance said before it, or, said on
                                  its own, the previous utterance as typed

Between utterances a space is typed, except after a line break.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKS: dict[tuple[str, ...], str] = {
    ("comma",): ",",
    ("period",): ".",
    ("full", "stop"): ".",
    ("question", "mark"): "?",
    ("exclamation", "mark"): "!",
    ("exclamation", "point"): "!",
    ("colon",): ":",
    ("semicolon",): ";",
    ("semi", "colon"): ";",
}
BREAKS: dict[tuple[str, ...], str] = {("new", "line"): "\n", ("new", "paragraph"): "\n\n"}
SCRATCH = ("scratch", "that")
SENTENCE_END = (".", "?", "!", "\n")
_MARK_TEXTS = tuple(set(MARKS.values()))
_TRAILING_PUNCTUATION = re.compile(r"[.,;:!?]+$")


@dataclass(frozen=True, slots=True)
class Edit:
    """Keystrokes for the focused application: ``backspaces`` first, then ``text``."""

    text: str = ""
    backspaces: int = 0


def _key(word: str) -> str:
    return re.sub(r"[^\w']", "", word).lower()


class SpokenCommands:
    """Turns each final into the edit to type, remembering what was typed for "scratch that"."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._typed: list[str] = []  # what each utterance typed, in order

    def receive_final(self, text: str) -> Edit:
        text = text.strip()
        if not text:
            return Edit()
        if not self.enabled:
            return self._type(text)
        words = text.split()
        keys = [_key(word) for word in words]
        out: list[str] = []  # pieces of this utterance: words, marks, breaks
        index = 0
        while index < len(words):
            matched = self._match(keys, index)
            if matched is None:
                out.append(words[index])
                index += 1
                continue
            phrase, length = matched
            if phrase == SCRATCH:
                if out:
                    out.clear()  # "scratch that" mid-utterance drops what came before it
                else:
                    return self._scratch_previous()
            elif phrase in MARKS:
                _strip_trailing(out)
                out.append(MARKS[phrase])
            else:
                _strip_trailing(out)
                out.append(BREAKS[phrase])
            index += length
        return self._type(_join(out))

    def _match(self, keys: list[str], index: int) -> tuple[tuple[str, ...], int] | None:
        for phrase in sorted([*MARKS, *BREAKS, SCRATCH], key=len, reverse=True):
            if tuple(keys[index : index + len(phrase)]) == phrase:
                return phrase, len(phrase)
        return None

    def _type(self, text: str) -> Edit:
        if not text:
            return Edit()
        previous = "".join(self._typed)
        if previous and not previous.endswith("\n") and not text.startswith(("\n", *_MARK_TEXTS)):
            text = " " + text
        if previous.endswith(SENTENCE_END) or not previous:
            text = _capitalize_first(text)
        self._typed.append(text)
        return Edit(text=text)

    def _scratch_previous(self) -> Edit:
        if not self._typed:
            return Edit()
        return Edit(backspaces=len(self._typed.pop()))


def _strip_trailing(out: list[str]) -> None:
    """Whisper often punctuates around a spoken command ("Hello, comma,"): keep only ours."""
    if out and out[-1] not in ("\n", "\n\n", *MARKS.values()):
        out[-1] = _TRAILING_PUNCTUATION.sub("", out[-1])
        if not out[-1]:
            out.pop()


def _join(pieces: list[str]) -> str:
    text = ""
    for piece in pieces:
        if piece in (",", ".", "?", "!", ":", ";"):
            text += piece
        elif piece.startswith("\n"):
            text = text.rstrip(" ") + piece
        elif not text or text.endswith("\n"):
            text += piece[:1].upper() + piece[1:] if text.endswith("\n") else piece
        else:
            text += " " + piece
    # A word after a spoken sentence end starts with a capital.
    return re.sub(r"([.?!] )(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def _capitalize_first(text: str) -> str:
    for index, char in enumerate(text):
        if char.isalpha():
            return text[:index] + char.upper() + text[index + 1 :]
    return text
