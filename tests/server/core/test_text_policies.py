"""LocalAgreement, prompt carry-over and the hallucination filter."""

from server.core.agreement import LocalAgreement, continuation_after, words_of
from server.core.prompt import PromptCarry, tail_at_word_boundary
from server.core.quality import (
    QualityThresholds,
    cut_repetition_loop,
    echoes_prompt,
    ends_in_a_loop,
    filter_transcription,
)
from server.core.transcription import Segment, Transcription


def test_three_agreeing_hypotheses_make_their_common_prefix_stable():
    agreement = LocalAgreement()
    assert agreement.receive_hypothesis("Hello") == ("", "Hello")
    assert agreement.receive_hypothesis("Hello, world") == ("", "Hello, world")
    assert agreement.receive_hypothesis("hello world. How") == ("hello", "world. How")
    # Case and punctuation do not break agreement; the stable text is never rewritten.
    assert agreement.receive_hypothesis("Hello world, how are") == ("hello world,", "how are")
    assert agreement.receive_hypothesis("Hello, world, how are you") == (
        "hello world, how",
        "are you",
    )


def test_two_agreeing_is_the_classic_local_agreement():
    agreement = LocalAgreement(agreeing=2)
    agreement.receive_hypothesis("Hello")
    assert agreement.receive_hypothesis("Hello, world") == ("Hello,", "world")


def test_the_last_word_of_a_hypothesis_never_becomes_stable():
    """Trailing silence makes Whisper add "you"; every partial of it agrees."""
    agreement = LocalAgreement()
    for _ in range(4):
        stable, tail = agreement.receive_hypothesis("in 1813. you")
    assert (stable, tail) == ("in 1813.", "you")
    assert agreement.finalize("In 1813.") == "in 1813."


def test_a_settled_hypothesis_makes_what_it_agrees_on_stable_last_word_included():
    agreement = LocalAgreement()
    agreement.receive_hypothesis("One.")
    assert agreement.receive_hypothesis("One, two.") == ("", "One, two.")
    # Audio that ends in a pause: its last word is whole, so agreement with the previous
    # hypotheses (both) is enough.
    assert agreement.receive_settled_hypothesis("One, two, three.") == ("One,", "two, three.")
    fresh = LocalAgreement()
    fresh.receive_hypothesis("One, two.")
    assert fresh.receive_settled_hypothesis("One, two.") == ("One, two.", "")
    # With nothing to agree with, nothing becomes stable.
    alone = LocalAgreement()
    assert alone.receive_settled_hypothesis("One, two.") == ("", "One, two.")


def test_two_settled_hypotheses_in_a_row_agree_on_their_own():
    # A digit string is written differently as it grows; the pause partial and the speculative
    # final of the same pause agree, and that is enough.
    agreement = LocalAgreement()
    for hypothesis in ("1 0", "1 0 z", "100000", "1 0"):
        agreement.receive_hypothesis(hypothesis)
    assert agreement.receive_settled_hypothesis("1,0001") == ("", "1,0001")
    assert agreement.receive_settled_hypothesis("10001.") == ("10001.", "")
    # A settled hypothesis after a growing one still needs both previous hypotheses.
    growing = LocalAgreement()
    growing.receive_hypothesis("one two")
    growing.receive_hypothesis("one too")
    assert growing.receive_settled_hypothesis("one two") == ("one", "two")


def test_a_number_written_as_digits_or_as_a_word_agrees():
    agreement = LocalAgreement()
    agreement.receive_hypothesis("1.")
    agreement.receive_hypothesis("One, two.")
    # Spelled out by one of them, so spelled out: greedy partials write "2" where the final
    # writes "Two.", and the final starts with the stable text.
    assert agreement.receive_hypothesis("1, 2, 3") == ("One,", "2, 3")
    digits = LocalAgreement()
    for _ in range(3):
        stable, _ = digits.receive_hypothesis("1, 2, 3")
    assert stable == "1, 2,"


def test_stable_words_survive_a_model_changing_its_mind():
    agreement = LocalAgreement(agreeing=2)
    agreement.receive_hypothesis("the cat sat")
    agreement.receive_hypothesis("the cat sat on")
    assert agreement.stable_text == "the cat sat"
    stable, tail = agreement.receive_hypothesis("a cat sat on the mat")
    assert stable == "the cat sat on" and tail == "the mat"
    assert agreement.finalize("the hat sat on the mat.") == "the cat sat on the mat."


def test_a_changed_stable_word_costs_that_word_not_the_words_after_it():
    """A greedy partial heard "what you are"; the final hears "what your country can do"."""
    stable = words_of("and so my fellow americans ask not what you are")
    final = words_of("And so my fellow Americans ask not what your country can do for you.")
    assert continuation_after(stable, final) == ["can", "do", "for", "you."]
    # A stable word the final drops is kept once, not repeated.
    assert continuation_after(["alpha", "beta", "gamma"], ["alpha", "beta"]) == []
    assert continuation_after(["one", "two"], ["one", "three", "four"]) == ["four"]


def test_a_final_completes_a_stable_word_it_hears_as_the_start_of_a_longer_one():
    agreement = LocalAgreement()
    for _ in range(3):
        agreement.receive_hypothesis("1, 0")
    assert agreement.stable_text == "1,"
    final = agreement.finalize("1,0001. 90210.")
    assert final == "1,0001. 90210." and final.startswith(agreement.stable_text)
    # A word that only looks alike, or the same word with other punctuation, stays as shown.
    assert agreement.finalize("10001 90210") == "1, 90210"
    assert agreement.finalize("1. 0.") == "1, 0."


def test_continuation_when_nothing_matches_keeps_words_beyond_the_stable_length():
    assert continuation_after(["x", "y"], ["a", "b", "c"]) == ["c"]


def test_prompt_is_static_prompt_then_the_bounded_tail_of_finals():
    carry = PromptCarry("Glossary: StreamScribe.", tail_chars=30)
    carry.receive_final("The first sentence is rather long indeed.", "en")
    carry.receive_final("Second one.", "en")
    prompt = carry.prompt()
    assert prompt.startswith("Glossary: StreamScribe. ")
    assert prompt.endswith("Second one.")
    assert len(carry.carried) <= 30
    assert not carry.carried.startswith(("ndeed", "eed"))


def test_tail_never_starts_mid_word():
    assert tail_at_word_boundary("alpha beta gamma", 8) == "gamma"
    assert tail_at_word_boundary("alpha beta gamma", 11) == "beta gamma"


def test_language_change_and_long_silence_reset_the_carried_text():
    carry = PromptCarry()
    carry.receive_final("Hello there.", "en")
    carry.receive_final("Guten Tag.", "de")
    assert carry.prompt() == "Guten Tag."
    carry.receive_silence(40_000, reset_after_ms=30_000)
    assert carry.prompt() == ""


def stats(text, **values):
    return Transcription(segments=(Segment(text=text, **values),))


def test_filter_keeps_confident_speech_and_names_what_it_drops():
    thresholds = QualityThresholds()
    assert filter_transcription(stats(" Hello.", avg_logprob=-0.2), thresholds) == ("Hello.", None)
    assert filter_transcription(stats(" la la la", compression_ratio=2.9), thresholds)[1] == (
        "repetition"
    )
    assert filter_transcription(stats(" mumble", avg_logprob=-1.4), thresholds)[1] == (
        "low_confidence"
    )
    assert filter_transcription(stats(" Thanks for watching!", avg_logprob=-0.6), thresholds) == (
        "",
        "known_hallucination",
    )
    # The same words said clearly are kept.
    assert filter_transcription(stats(" Thank you.", avg_logprob=-0.1), thresholds)[0] == (
        "Thank you."
    )


def test_partials_take_whispers_own_no_speech_rule_and_finals_a_stricter_one():
    heard = stats(" Go for", no_speech_prob=0.7, avg_logprob=-0.7)
    unsure = stats(" Okay.", no_speech_prob=0.7, avg_logprob=-1.1)
    thresholds = QualityThresholds()
    assert filter_transcription(heard, thresholds) == ("", "no_speech")
    assert filter_transcription(heard, thresholds.for_partials()) == ("Go for", None)
    assert filter_transcription(unsure, thresholds.for_partials())[0] == ""


def test_first_words_may_be_less_sure_but_not_called_silence():
    thresholds = QualityThresholds().for_first_words()
    heard = stats(" He", no_speech_prob=0.4, avg_logprob=-1.1)
    assert filter_transcription(heard, QualityThresholds().for_partials()) == ("", "low_confidence")
    assert filter_transcription(heard, thresholds) == ("He", None)
    guessed = stats(" I'm going to be right back.", no_speech_prob=0.5, avg_logprob=-1.8)
    assert filter_transcription(guessed, thresholds) == ("", "low_confidence")
    silence = stats(" Okay.", no_speech_prob=0.7, avg_logprob=-1.1)
    assert filter_transcription(silence, thresholds) == ("", "no_speech")


def test_a_doubtful_phrase_of_the_prompt_said_back_is_dropped():
    prompt = "I'm Abbie. Eight of spades, four of clothes, seven of hearts."
    echo = stats(" Eight of spades, five of hearts.", no_speech_prob=0.77, avg_logprob=-0.78)
    assert filter_transcription(echo, QualityThresholds().for_partials(), prompt=prompt) == (
        "",
        "prompt_echo",
    )
    assert filter_transcription(echo, QualityThresholds().for_partials())[0] != ""
    # Said clearly, the same words are speech: a card game repeats itself.
    clear = stats(" Eight of spades, five of hearts.", no_speech_prob=0.01, avg_logprob=-0.2)
    assert filter_transcription(clear, QualityThresholds(), prompt=prompt)[1] is None


def test_an_echo_is_a_run_of_three_prompt_words_and_mostly_prompt_words():
    prompt = "Eight of spades, four of clothes, seven of hearts."
    assert echoes_prompt("Four of clothes, seven.", prompt)
    assert echoes_prompt("Eight of spades, five of hearts.", prompt)  # 5 of 6 words
    assert not echoes_prompt("seven of hearts", prompt)  # three words may be said again
    assert not echoes_prompt("hearts of seven spades", prompt)  # no run in the prompt's order
    assert not echoes_prompt("Seven of hearts is the card", prompt)  # half new words
    assert not echoes_prompt("Seven of hearts again", prompt)  # three quarters: speech
    assert not echoes_prompt("four of clothes, seven", "")


def test_a_partial_that_starts_looping_is_cut_after_the_phrase_once():
    assert cut_repetition_loop("Montreal Montreal Montreal... forced") == "Montreal"
    assert cut_repetition_loop("and then a b a b a b a") == "and then a b"
    # Two repeats are speech ("very very"); three of a phrase are a loop.
    assert cut_repetition_loop("It was very very good.") == "It was very very good."
    assert cut_repetition_loop("hahaha, One, two, three.") == "hahaha, One, two, three."


def test_a_text_that_ends_in_a_loop_is_noticed():
    """What a final on a short window is decoded again for (on 30 s)."""
    assert ends_in_a_loop("Cares. Cares")
    assert ends_in_a_loop("This is me talking really. This is me talking really.")
    assert ends_in_a_loop("to do for them. For them, for them.")
    assert not ends_in_a_loop("One zero zero zero one.")
    assert not ends_in_a_loop("It was very very good.")
    assert not ends_in_a_loop("Words, and more words.")
    assert not ends_in_a_loop("")
