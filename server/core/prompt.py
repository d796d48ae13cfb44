"""Prompt carry-over: each request's prompt is the static prompt then the tail of the finals.

Carrying text forward keeps names, casing and style consistent, but it is also how Whisper's
repetition loops spread. So only finals that passed the quality filter are carried, and the
carried text is forgotten after a long silence or when the language changes, where the old
text would mislead more than help.
"""

from __future__ import annotations

DEFAULT_TAIL_CHARS = 200


def tail_at_word_boundary(text: str, max_chars: int) -> str:
    """The last ``max_chars`` characters of ``text``, not starting in the middle of a word."""
    if len(text) <= max_chars:
        return text
    tail = text[-max_chars:]
    if text[-max_chars - 1].isspace() or tail[0].isspace():
        return tail.lstrip()
    _, _, rest = tail.partition(" ")
    return rest or tail


class PromptCarry:
    def __init__(self, static_prompt: str = "", tail_chars: int = DEFAULT_TAIL_CHARS) -> None:
        self.static_prompt = static_prompt.strip()
        self.tail_chars = tail_chars
        self._carried = ""
        self._language: str | None = None

    @property
    def carried(self) -> str:
        return self._carried

    def prompt(self) -> str:
        """The prompt for the next request."""
        return " ".join(part for part in (self.static_prompt, self._carried) if part)

    def receive_final(self, text: str, language: str | None) -> None:
        """Carry a final that passed the quality filter."""
        if language and self._language and language != self._language:
            self._carried = ""
        if language:
            self._language = language
        text = text.strip()
        if text:
            joined = f"{self._carried} {text}" if self._carried else text
            self._carried = tail_at_word_boundary(joined, self.tail_chars)

    def receive_silence(self, silence_ms: int, reset_after_ms: int) -> None:
        """Forget the carried text after a long silence (a new topic, or a new speaker)."""
        if reset_after_ms and silence_ms >= reset_after_ms:
            self.reset()

    def reset(self) -> None:
        self._carried = ""
        self._language = None
