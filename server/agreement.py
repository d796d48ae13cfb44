"""LocalAgreement: the words two consecutive hypotheses agree on become stable.

Stable words never change within an utterance. Words are compared loosely (case and punctuation
ignored) because Whisper often re-punctuates a growing utterance ("Hello." then "Hello,
world"); the stable text keeps the surface form it was first agreed with.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_PUNCTUATION = re.compile(r"[^\w']+", re.UNICODE)


def words_of(text: str) -> list[str]:
    return text.split()


def comparable(word: str) -> str:
    """Key under which two spellings of a word count as the same."""
    return _PUNCTUATION.sub("", word).lower()


def common_prefix_words(first: list[str], second: list[str]) -> int:
    """How many leading words the two word lists share, compared loosely."""
    count = 0
    for left, right in zip(first, second, strict=False):
        if comparable(left) != comparable(right):
            break
        count += 1
    return count


def continuation_after(stable: list[str], hypothesis: list[str]) -> list[str]:
    """The words of ``hypothesis`` that come after the part matching ``stable``.

    When the hypothesis starts with the stable words this is a plain slice. When the model
    changed its mind about a stable word, the hypothesis is aligned to the stable words and the
    text after the last aligned word is kept, so nothing stable is repeated or lost.
    """
    if not stable:
        return hypothesis
    if common_prefix_words(stable, hypothesis) == len(stable):
        return hypothesis[len(stable) :]
    matcher = SequenceMatcher(
        a=[comparable(word) for word in stable],
        b=[comparable(word) for word in hypothesis],
        autojunk=False,
    )
    blocks = [block for block in matcher.get_matching_blocks() if block.size]
    if not blocks:
        # Nothing in common: keep only the words beyond the stable length.
        return hypothesis[len(stable) :]
    last = blocks[-1]
    stable_words_left = len(stable) - (last.a + last.size)
    return hypothesis[last.b + last.size + stable_words_left :]


class LocalAgreement:
    """Tracks the stable prefix of one utterance across successive partial hypotheses."""

    def __init__(self) -> None:
        self.stable_words: list[str] = []
        self._previous: list[str] | None = None

    @property
    def stable_text(self) -> str:
        return " ".join(self.stable_words)

    def receive_hypothesis(self, text: str) -> tuple[str, str]:
        """Take a new hypothesis; return (stable text, unstable tail) to show the user."""
        tail = continuation_after(self.stable_words, words_of(text))
        if self._previous is not None:
            previous_tail = continuation_after(self.stable_words, self._previous)
            agreed = common_prefix_words(previous_tail, tail)
            self.stable_words.extend(tail[:agreed])
            tail = tail[agreed:]
        self._previous = words_of(text)
        return self.stable_text, " ".join(tail)

    def finalize(self, text: str) -> str:
        """The final text: the stable words as shown, then the final hypothesis's remainder."""
        return " ".join(
            [*self.stable_words, *continuation_after(self.stable_words, words_of(text))]
        )
