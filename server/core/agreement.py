"""LocalAgreement-n: the words n consecutive hypotheses agree on become stable (n = 3).

Stable words never change within an utterance. Words are compared loosely (case and punctuation
ignored) because Whisper often re-punctuates a growing utterance ("Hello." then "Hello,
world"); the stable text keeps the surface form it was first agreed with, except that a number
one agreeing hypothesis spelled out stays spelled out.

The newest hypothesis's last word never becomes stable, even when the previous hypothesis agrees
on it: it is the word the audio may have cut, and where the audio ends in a breath or silence it
is where Whisper puts its hallucinations ("you", "Thank you."). Two partials of the same trailing
silence agree on those as readily as on real words; a word that the model has since continued
past is far more likely to be right. Three agreeing hypotheses rather than two for the same
reason: greedy partials of nearly the same audio make the same mistakes, and every wrong stable
word is a word the final must keep. ``benchmarks/agreement_replay.py`` measures the choice.

A *settled* hypothesis is the exception to the last-word rule: one of audio that ends in a pause
(the partial asked for when the speaker pauses, or the speculative final). Its last word is not
cut by the audio's end, so the words it agrees on with the previous hypotheses, its last word
included, become stable. Short utterances ("One, two, three.") rarely get three hypotheses and a
word beyond them before they end; this is what gives them stable words (OpenAI Realtime deltas)
while the speaker is paused, before the silence window closes.

Two settled hypotheses in a row need only agree with each other: the pause partial and the
speculative final hear the same audio up to the same pause, whole, one greedy and one with the
final's beam. Partials taken while the audio was still growing need not agree with them: a
string of digits is written differently as it grows ("1 0", "100000", then "1,0001" at the pause)
and would otherwise never give a stable word before the silence window closes.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"[^\w']+", re.UNICODE)


def words_of(text: str) -> list[str]:
    return text.split()


# Whisper writes a number as digits in one hypothesis and as a word in the next ("1," then
# "One,"), so a counted list would never agree: single-word English numbers compare as digits.
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(_UNITS.split())} | {
    word: str(10 * tens) for tens, word in enumerate(_TENS.split(), start=2)
}


def _bare(word: str) -> str:
    """``word`` without case or punctuation."""
    return _PUNCTUATION.sub("", word).lower()


def comparable(word: str) -> str:
    """Key under which two spellings of a word count as the same."""
    key = _bare(word)
    return _NUMBER_WORDS.get(key, key)


def spelled_out(word: str, others: list[str]) -> str:
    """The form a stable word keeps: ``word`` (the newest hypothesis's), unless it is a number
    another agreeing hypothesis spelled out. Greedy partials write "2" where the final writes
    "Two.", and the final must start with the stable text: "One. 2 Three." was the transcript."""
    if _bare(word) in _NUMBER_WORDS:
        return word
    return next((other for other in others if _bare(other) in _NUMBER_WORDS), word)


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
    changed its mind about some stable words, the stable words are aligned to the hypothesis's
    beginning by word edit distance: the cut is the hypothesis prefix closest to them (nearest
    to their length among equals), so a changed word ("you" heard again as "your") costs that
    word, never the words after it, and nothing stable is repeated.
    """
    if not stable:
        return hypothesis
    if common_prefix_words(stable, hypothesis) == len(stable):
        return hypothesis[len(stable) :]
    return hypothesis[_aligned_prefix_length(stable, hypothesis) :]


def _aligned_prefix_length(stable: list[str], hypothesis: list[str]) -> int:
    """The ``k`` whose ``hypothesis[:k]`` is fewest word edits from ``stable``."""
    left = [comparable(word) for word in stable]
    right = [comparable(word) for word in hypothesis]
    # Levenshtein distances from left[:i] to every right[:j], one row per stable word.
    row = list(range(len(right) + 1))
    for i, word in enumerate(left, start=1):
        previous, row = row, [i]
        for j, other in enumerate(right, start=1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (word != other)))
    return min(range(len(row)), key=lambda k: (row[k], abs(k - len(stable))))


class LocalAgreement:
    """Tracks the stable prefix of one utterance across successive partial hypotheses.

    ``agreeing`` is how many consecutive hypotheses must agree on a word (LocalAgreement-n).
    """

    def __init__(self, agreeing: int = 3) -> None:
        self.agreeing = max(agreeing, 2)
        self.stable_words: list[str] = []
        self._previous: list[list[str]] = []  # the last ``agreeing - 1`` hypotheses
        self._previous_settled = False  # whether the last of them was a settled hypothesis

    @property
    def stable_text(self) -> str:
        return " ".join(self.stable_words)

    def receive_hypothesis(self, text: str) -> tuple[str, str]:
        """Take a new hypothesis; return (stable text, unstable tail) to show the user.

        A hypothesis without words (the request at speech onset heard too little, or its text
        was dropped as unreliable) is no vote: counting it would make the next two hypotheses
        agree with nothing, and delay every stable word by that many partials."""
        return self._receive(text, settled=False)

    def receive_settled_hypothesis(self, text: str) -> tuple[str, str]:
        """Take a hypothesis of audio that ends in a pause (see the module's docstring)."""
        return self._receive(text, settled=True)

    def settle_last_hypothesis(self) -> None:
        """The last hypothesis turned out to end in a pause (no word was spoken after its
        audio ended): the next settled hypothesis need only agree with it."""
        self._previous_settled = bool(self._previous)

    def finalize(self, text: str) -> str:
        """The final text: the stable words as shown, then the final hypothesis's remainder.

        A last stable word the final hears as the start of a longer word is completed in
        place, so the final still begins with the stable text: tiny.en's partials agreed on
        "1," while the speaker said "one zero zero zero one", its final wrote "1,0001.", and
        without this the final was "1," (the word aligned to the stable one, nothing after it).
        """
        hypothesis = words_of(text)
        rest = continuation_after(self.stable_words, hypothesis)
        words = list(self.stable_words)
        aligned = len(hypothesis) - len(rest)
        if words and aligned:
            last, heard = words[-1], hypothesis[aligned - 1]
            if heard.startswith(last) and comparable(heard) != comparable(last):
                words[-1] = heard
        return " ".join([*words, *rest])

    def _receive(self, text: str, *, settled: bool) -> tuple[str, str]:
        if not words_of(text):
            return self.stable_text, ""
        tail = continuation_after(self.stable_words, words_of(text))
        if len(self._previous) == self.agreeing - 1 or (settled and self._previous):
            agreed = len(tail) if settled else max(len(tail) - 1, 0)
            voters = self._previous[-1:] if settled and self._previous_settled else self._previous
            voter_tails = [continuation_after(self.stable_words, previous) for previous in voters]
            for previous_tail in voter_tails:
                agreed = min(agreed, common_prefix_words(previous_tail, tail))
            self.stable_words.extend(
                spelled_out(tail[i], [previous[i] for previous in voter_tails])
                for i in range(agreed)
            )
            tail = tail[agreed:]
        self._previous = [*self._previous, words_of(text)][-(self.agreeing - 1) :]
        self._previous_settled = settled
        return self.stable_text, " ".join(tail)
