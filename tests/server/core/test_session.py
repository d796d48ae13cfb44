import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.backends.fake import ScriptedTranscriber
from server.core.errors import InvalidAudio, InvalidMessage, SessionClosing
from server.core.events import (
    FinalText,
    PartialText,
    RequestCancelled,
    SessionDrained,
    SessionError,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.options import SessionOptions
from server.core.session import Session
from server.core.transcription import RequestKind, Segment, TranscribeRequest, Transcription
from tests.audio import bursts, pcm16
from tests.server.session_driver import Driver, energy_session

TWO_UTTERANCES = pcm16(bursts(500, 2000, 1000, 1500, 800))


def test_partials_then_exactly_one_final_per_utterance():
    driver = Driver(energy_session(), ScriptedTranscriber(["hello there world", "second one"]))
    driver.feed(TWO_UTTERANCES, 3200)
    driver.close()
    finals = driver.of_type(FinalText)
    assert [f.text for f in finals] == ["hello there world", "second one"]
    assert [f.utterance_id for f in finals] == [1, 2]
    assert all(f.reason == "silence" for f in finals)
    for final in finals:
        index = driver.events.index(final)
        before = [e for e in driver.events[:index] if isinstance(e, PartialText)]
        assert any(p.utterance_id == final.utterance_id for p in before)
        after = [e for e in driver.events[index:] if isinstance(e, PartialText)]
        assert not any(p.utterance_id == final.utterance_id for p in after)
    assert isinstance(driver.events[-1], SessionDrained)


def test_stable_text_only_grows_and_the_final_keeps_it():
    transcriber = ScriptedTranscriber(["one two three four five six seven"], words_per_second=3)
    driver = Driver(energy_session(), transcriber)
    driver.feed(pcm16(bursts(300, 3000, 800)), 1600)
    partials = driver.of_type(PartialText)
    stables = [p.stable_text for p in partials]
    assert stables[-1]  # something became stable
    for earlier, later in itertools.pairwise(stables):
        assert later.startswith(earlier)
    final = driver.of_type(FinalText)[0]
    assert final.text.startswith(stables[-1])
    # No partial repeats the one before it.
    shown = [(p.text, p.stable_text) for p in partials]
    assert all(a != b for a, b in itertools.pairwise(shown))


def test_each_request_carries_the_previous_finals_as_prompt():
    driver = Driver(
        energy_session(prompt="Glossary: Quilter."),
        ScriptedTranscriber(["Mr. Quilter spoke", "then he left"]),
    )
    driver.feed(TWO_UTTERANCES, 3200)
    finals = driver.of_type(FinalText)
    assert finals[0].prompt == "Glossary: Quilter."
    assert finals[1].prompt == "Glossary: Quilter. Mr. Quilter spoke"
    second_requests = [e for e in driver.of_type(TranscribeRequest) if e.utterance_id == 2]
    assert all(r.options.prompt.endswith("Mr. Quilter spoke") for r in second_requests)
    # The partials before the utterance shows text are marked: a local model may leave the
    # carried text out of those (first words come sooner on tiny.en).
    first_text = next(e for e in driver.of_type(PartialText) if e.utterance_id == 2)
    shown_at = driver.events.index(first_text)
    marked = [r for r in second_requests if r.options.first_words]
    assert marked and all(r.kind is RequestKind.PARTIAL for r in marked)
    assert all(driver.events.index(r) < shown_at for r in marked)
    assert all(
        not r.options.first_words for r in second_requests if driver.events.index(r) > shown_at
    )


def test_final_request_is_speculative_and_cancelled_when_speech_resumes():
    # Pause of 300 ms (> 200 ms end padding, < 500 ms silence window), then more speech.
    driver = Driver(energy_session(), ScriptedTranscriber(["a b c"]))
    driver.feed(pcm16(bursts(500, 1000, 300, 1000, 1000)), 1600)
    finals_requested = [e for e in driver.of_type(TranscribeRequest) if e.kind is RequestKind.FINAL]
    cancelled = {e.request_id for e in driver.of_type(RequestCancelled)}
    assert len(finals_requested) == 2
    assert finals_requested[0].request_id in cancelled
    assert len(driver.of_type(FinalText)) == 1
    stopped = driver.of_type(UtteranceStopped)[0]
    assert finals_requested[1].end_samples == stopped.end_samples


def test_speculative_final_is_requested_before_the_silence_window_closes():
    session = energy_session()
    events = session.receive_audio(pcm16(bursts(500, 1000, 250)))
    finals = [e for e in events if isinstance(e, TranscribeRequest) and e.kind is RequestKind.FINAL]
    assert finals and not [e for e in events if isinstance(e, UtteranceStopped)]


def test_a_pause_asks_for_a_partial_whose_words_become_stable_before_speech_stops():
    # Partials hear "one", "one", "one two": three agree on "one" only, as "two" is the
    # newest hypothesis's last word. When speech pauses a partial is due at once, for the
    # speculative final's span; its audio ends in silence, so its words need no word after
    # them: what it agrees on with the previous two ("one two") is stable before the silence
    # window closes.
    driver = Driver(energy_session(), ScriptedTranscriber(["one two three"], words_per_second=2))
    driver.feed(pcm16(bursts(300, 1500, 250)), 320, hold=True)
    final = next(r for r in driver.held if r.kind is RequestKind.FINAL)
    partials = [r for r in driver.held if r.kind is RequestKind.PARTIAL]
    pause_partial = partials[-1]
    assert pause_partial.end_samples == final.end_samples
    for request in partials[:-1]:
        driver.reply(request)
    assert driver.of_type(PartialText)[-1].stable_text == "one"
    driver.reply(pause_partial)
    assert not driver.of_type(UtteranceStopped)  # the speaker is still paused
    shown = driver.of_type(PartialText)[-1]
    assert (shown.stable_text, shown.text) == ("one two", "one two three")
    driver.reply(final)
    driver.feed(pcm16(bursts(0, 0, 600)), 320)
    assert driver.of_type(FinalText)[0].text.startswith("one two")


def test_a_partial_that_heard_every_voiced_word_is_settled_when_speech_pauses():
    # Speech ends at 1230 ms; the partial asked for at 1230 ms heard all of it, so when the
    # speaker pauses no pause partial is asked for, and that partial counts as settled: the
    # speculative final need only agree with it. A digit string is written differently by
    # every partial while it grows; without this rule it gets no stable word before the
    # silence window closes.
    driver = Driver(energy_session(), ScriptedTranscriber())
    driver.feed(pcm16(bursts(300, 930, 250)), 320, hold=True)
    final = next(r for r in driver.held if r.kind is RequestKind.FINAL)
    partials = [r for r in driver.held if r.kind is RequestKind.PARTIAL]
    assert partials[-1].end_samples < final.end_samples  # no pause partial

    def said(text: str) -> Transcription:
        return Transcription((Segment(text=" " + text),), language="en")

    for request, text in zip(partials, ["1 0", "1 0 z", "100000", "1,0001."], strict=True):
        driver.answer(driver.session.receive_transcription(request, said(text)))
    assert driver.of_type(PartialText)[-1].stable_text == ""
    driver.answer(driver.session.receive_transcription(final, said("10001.")))
    assert not driver.of_type(UtteranceStopped)  # the speaker is still paused
    assert driver.of_type(PartialText)[-1].stable_text == "10001."


def test_until_an_utterance_shows_text_a_partial_is_due_every_100_ms():
    # Heard too little at the onset: the next partial is due 100 ms of audio later, not half an
    # interval later; once text is shown the cadence is the usual.
    driver = Driver(energy_session(), ScriptedTranscriber())
    speech = pcm16(bursts(300, 3000, 0))
    ends = []
    for offset in range(0, len(speech), 640):  # 20 ms messages, answers at once
        driver.feed(speech[offset : offset + 640], hold=True)
        for request in [r for r in driver.held if r.kind is RequestKind.PARTIAL]:
            driver.held.remove(request)
            ends.append(request.end_samples)
            said = (Segment(text=" hello"),) if len(ends) >= 4 else ()
            driver.answer(driver.session.receive_transcription(request, Transcription(said)))
    steps_ms = [(later - earlier) // 16 for earlier, later in itertools.pairwise(ends)]
    assert all(100 <= step <= 120 for step in steps_ms[:3])  # 100 ms, in 30 ms VAD frames
    assert driver.of_type(PartialText)[0].text == "hello"
    assert min(steps_ms[3:]) >= 250


def test_unsure_first_words_are_shown_but_not_voted_and_the_chase_goes_on():
    # On a few hundred ms of speech the model writes the right word less sure of it than
    # Whisper's -1.0. Such first words are shown (nothing stable), the next partial is still due
    # 100 ms later, and they cast no vote: after "He", "He" and a sure "he was" nothing is
    # stable, where three hypotheses starting "he" would have made it so.
    driver = Driver(energy_session(), ScriptedTranscriber())
    speech = pcm16(bursts(300, 3000, 0))
    answers = [
        hallucination(" I'm going to be right back.", avg_logprob=-1.8),  # too unsure to show
        hallucination(" He", avg_logprob=-1.1),
        hallucination(" He", avg_logprob=-1.1),
        hallucination(" he was", avg_logprob=-0.6),
    ]
    requests = []
    for offset in range(0, len(speech), 640):  # 20 ms messages, answers at once
        driver.feed(speech[offset : offset + 640], hold=True)
        for request in [r for r in driver.held if r.kind is RequestKind.PARTIAL]:
            driver.held.remove(request)
            requests.append(request)
            if len(requests) <= len(answers):
                answer = answers[len(requests) - 1]
                driver.answer(driver.session.receive_transcription(request, answer))
    shown = [(p.text, p.stable_text) for p in driver.of_type(PartialText)]
    assert shown[:2] == [("He", ""), ("he was", "")]
    assert [r.options.first_words for r in requests[:5]] == [True, True, True, True, False]
    steps_ms = [(b.end_samples - a.end_samples) // 16 for a, b in itertools.pairwise(requests)]
    assert all(100 <= step <= 120 for step in steps_ms[:3])  # the chase went on after "He"


class HeldSpeech:
    """Three seconds of speech fed in 20 ms messages, every request held for the test."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.speech = pcm16(bursts(300, 3000, 0))
        self.fed = 0

    def feed_ms(self, milliseconds: int) -> list[TranscribeRequest]:
        """Feed ``milliseconds`` more; the partial requests held so far."""
        for _ in range(milliseconds // 20):
            self.driver.feed(self.speech[self.fed : self.fed + 640], hold=True)
            self.fed += 640
        return [r for r in self.driver.held if r.kind is RequestKind.PARTIAL]


def test_first_words_leave_at_most_one_partial_unanswered():
    # A partial of base takes longer than the 100 ms step, so the next first-words partial is
    # asked for while the newest is still running, but never while an older one is: two at most.
    driver = Driver(energy_session(), ScriptedTranscriber())
    feed_ms = HeldSpeech(driver).feed_ms
    while not feed_ms(20):
        pass
    # 240 ms more: two steps, but less than the usual interval early in an utterance (250 ms)
    partials = feed_ms(240)
    assert len(partials) == 2
    assert all(r.options.first_words for r in partials)
    driver.answer(driver.session.receive_transcription(partials[0], Transcription(())))
    assert len(feed_ms(40)) == 3  # a VAD frame later


def test_after_unsure_first_words_the_chase_waits_for_each_answer():
    # Two first-words partials at once are for an utterance that shows nothing; once unsure
    # words are on screen the chase for sure ones must not keep two workers from the finals.
    driver = Driver(energy_session(), ScriptedTranscriber())
    feed_ms = HeldSpeech(driver).feed_ms
    while not feed_ms(20):
        pass
    unsure = hallucination(" He", avg_logprob=-1.1)
    driver.answer(driver.session.receive_transcription(driver.held[0], unsure))
    assert driver.of_type(PartialText)[-1].text == "He"
    partials = feed_ms(240)  # two steps: one partial, then none while it runs
    assert len(partials) == 2 and partials[1].options.first_words
    driver.answer(driver.session.receive_transcription(partials[1], unsure))
    assert len(feed_ms(40)) == 3  # a VAD frame later


def test_a_partial_answered_after_speech_ended_changes_nothing():
    driver = Driver(energy_session(), ScriptedTranscriber(["one two three"], words_per_second=2))
    driver.feed(pcm16(bursts(300, 1500, 250)), 320, hold=True)
    late = [r for r in driver.held if r.kind is RequestKind.PARTIAL][-1]
    for request in driver.held:
        if request is not late:
            driver.reply(request)
    driver.feed(pcm16(bursts(0, 0, 600)), 320)
    assert driver.of_type(UtteranceStopped)
    count = len(driver.of_type(PartialText))
    driver.reply(late)
    assert len(driver.of_type(PartialText)) == count


def test_finals_come_out_in_order_even_when_answers_do_not():
    driver = Driver(energy_session(), ScriptedTranscriber(["first", "second"]))
    driver.feed(TWO_UTTERANCES, 3200, hold=True)
    driver.answer(driver.session.receive_end_of_stream(), hold=True)
    finals_held = [r for r in driver.held if r.kind is RequestKind.FINAL]
    # Only the first final is requested: the second waits for its prompt.
    assert [r.utterance_id for r in finals_held] == [1]
    for request in reversed(driver.held):
        driver.reply(request)
    assert [f.utterance_id for f in driver.of_type(FinalText)] == [1, 2]
    # The second final was requested long after its audio left the buffer: it kept a copy.
    for final in [r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.FINAL]:
        assert len(final.audio) == final.end_samples - final.start_samples > 0
    assert isinstance(driver.events[-1], SessionDrained)


def test_an_older_partial_answer_never_overwrites_a_newer_one():
    driver = Driver(energy_session(), ScriptedTranscriber(["alpha beta gamma delta"]))
    driver.feed(pcm16(bursts(300, 2000)), 1600, hold=True)
    partial_requests = [r for r in driver.held if r.kind is RequestKind.PARTIAL]
    assert len(partial_requests) >= 2
    driver.reply(partial_requests[-1])
    count = len(driver.of_type(PartialText))
    driver.reply(partial_requests[0])
    assert len(driver.of_type(PartialText)) == count


def test_partials_follow_new_speech_only():
    signal = bursts(300, 1000, 190, 1000, 800)  # a 190 ms gap: not long enough to pause
    driver = Driver(energy_session(partial_interval_ms=100), ScriptedTranscriber(["a b c d"]))
    driver.feed(pcm16(signal), 640)
    partials = [r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.PARTIAL]
    assert len(partials) > 5
    for previous, request in itertools.pairwise(partials):
        new_audio = signal[previous.end_samples : request.end_samples]
        assert np.abs(new_audio).max() > 0.01, "a partial re-transcribed silence only"


class SlowQueue(ScriptedTranscriber):
    def transcribe(self, audio, options, *, final=True):
        return replace(super().transcribe(audio, options, final=final), queue_ms=1500.0)


def test_partials_slow_down_to_the_models_turnaround():
    driver = Driver(energy_session(), SlowQueue(["one two three four five six"]))
    driver.feed(pcm16(bursts(300, 6000, 800)), 1600)
    partials = [r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.PARTIAL]
    gaps = [b.end_samples - a.end_samples for a, b in itertools.pairwise(partials)]
    # Once the utterance is under way, partials are spaced by the turnaround answers report.
    assert len(gaps) > 3 and min(gaps[-2:]) >= 1500 * 16
    # The first partial still comes after the base interval.
    assert partials[0].end_samples - partials[0].start_samples <= 600 * 16


class FinalHearsItDifferently(ScriptedTranscriber):
    """The final's answer changes the first word the partials agreed on and adds one at the end."""

    def transcribe(self, audio, options, *, final=True):
        answer = super().transcribe(audio, options, final=final)
        if not final:
            return answer
        text = " ".join(["won", *answer.text.split()[1:], "seven"])
        return Transcription((Segment(text=" " + text),), language="en")


def test_the_final_keeps_the_stable_words_and_takes_the_rest_from_its_answer():
    transcriber = FinalHearsItDifferently(["one two three four five six"], words_per_second=3)
    driver = Driver(energy_session(), transcriber)
    driver.feed(pcm16(bursts(300, 2500, 800)), 1600)
    final_request = next(
        r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.FINAL
    )
    last_stable = [p.stable_text for p in driver.of_type(PartialText)][-1]
    assert last_stable.startswith("one")
    final = driver.of_type(FinalText)[0]
    # The stable words as shown, then the answer's words after the part aligned to them.
    assert final.text == "one two three four five six seven"
    # After the final request only hypotheses of its own span (the speculative final's answer
    # and the pause partial, heard while the speaker is paused) may confirm stable words.
    index = driver.events.index(final_request)
    later = [e for e in driver.events[index:] if isinstance(e, PartialText)]
    assert all(p.end_samples == final_request.end_samples for p in later)
    assert all(final.text.startswith(p.stable_text) for p in later)


class PartialsRunAhead(ScriptedTranscriber):
    """Partials hear words past the cut point; the final of the cut audio does not."""

    def transcribe(self, audio, options, *, final=True):
        text = " alpha beta" if final else " alpha beta gamma delta"
        return Transcription(segments=(Segment(text=text),), language="en", backend="t")


def test_a_forced_cut_final_does_not_keep_stable_words_from_past_the_cut():
    driver = Driver(energy_session(max_utterance_duration_ms=4000), PartialsRunAhead())
    driver.feed(pcm16(bursts(300, 5000, 1000)), 1600)
    driver.close()
    finals = driver.of_type(FinalText)
    assert finals[0].reason == "max_duration"
    assert finals[0].text == "alpha beta"
    stable = [p.stable_text for p in driver.of_type(PartialText) if p.utterance_id == 1]
    assert stable[-1] == "alpha beta gamma"  # the last word of a hypothesis is never stable
    # A silence-ended utterance keeps its stable words.
    assert finals[-1].reason == "silence"
    assert finals[-1].text.startswith("alpha beta gamma")


def test_only_finals_of_audio_that_ends_in_a_pause_may_take_the_short_window():
    """The model may encode such a final on a short window; one cut while the speaker talked
    (``max_duration``) gets Whisper's 30 s, where the short window lost words."""
    driver = Driver(energy_session(max_utterance_duration_ms=4000), PartialsRunAhead())
    driver.feed(pcm16(bursts(300, 5000, 1000)), 1600)
    driver.close()
    finals = [r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.FINAL]
    reasons = [final.reason for final in driver.of_type(FinalText)]
    assert reasons[0] == "max_duration" and reasons[-1] == "silence"
    assert not finals[0].options.ends_in_silence
    assert finals[-1].options.ends_in_silence
    partials = [r for r in driver.of_type(TranscribeRequest) if r.kind is RequestKind.PARTIAL]
    assert partials and not any(p.options.ends_in_silence for p in partials)


class PartialsEndOn(ScriptedTranscriber):
    """Every partial ends on ``tail``; the final reads as said."""

    def __init__(self, tail: str) -> None:
        super().__init__()
        self.tail = tail

    def transcribe(self, audio, options, *, final=True):
        text = " some more words" if final else f" some more {self.tail}"
        return Transcription(segments=(Segment(text=text),), language="en", backend="t")


@pytest.mark.parametrize(("tail", "looped"), [("words words", True), ("words", False)])
def test_a_final_after_a_partial_that_looped_says_so(tail, looped):
    """The model encodes such a final on its longer window at once: on the short window it
    would end in the same loop and be decoded again."""
    driver = Driver(energy_session(), PartialsEndOn(tail))
    driver.feed(pcm16(bursts(300, 2500, 800)), 1600)
    driver.close()
    requests = driver.of_type(TranscribeRequest)
    assert any(r.kind is RequestKind.PARTIAL for r in requests)
    final = next(r for r in requests if r.kind is RequestKind.FINAL)
    assert final.options.ends_in_silence
    assert final.options.partial_looped is looped


def hallucination(text: str, **stats) -> Transcription:
    return Transcription(segments=(Segment(text=text, **stats),), language="en", backend="t")


class FixedTranscriber(ScriptedTranscriber):
    def __init__(self, answer: Transcription):
        super().__init__()
        self.fixed = answer

    def transcribe(self, audio, options, *, final=True):
        return self.fixed


def test_no_speech_output_is_dropped_and_not_carried_into_the_prompt():
    answer = hallucination(" Thank you for watching!", no_speech_prob=0.9, avg_logprob=-1.2)
    driver = Driver(energy_session(), FixedTranscriber(answer))
    driver.feed(TWO_UTTERANCES, 3200)
    finals = driver.of_type(FinalText)
    assert [f.text for f in finals] == ["", ""]
    assert finals[0].dropped == "no_speech"
    assert finals[1].prompt == ""
    assert not driver.of_type(PartialText)


class HeardButCalledSilence(ScriptedTranscriber):
    """Answers as Whisper does early in an utterance: the word is there, but with a few hundred
    ms of speech in the window the model calls the window silence."""

    def __init__(self, partial_text: str) -> None:
        super().__init__()
        self.partial_text = partial_text

    def transcribe(self, audio, options, *, final=True):
        text = " Eight of spades." if final else self.partial_text
        return hallucination(text, no_speech_prob=0.72, avg_logprob=-0.8)


def test_a_partial_the_model_calls_silence_still_shows_the_words_it_heard():
    """Whisper's own no-speech rule for partials: silence only when the words are also unsure
    (log probability under -1.0). A final with the same figures is dropped: it stays."""
    driver = Driver(energy_session(), HeardButCalledSilence(" Eight"))
    driver.feed(TWO_UTTERANCES, 3200)
    assert [p.text for p in driver.of_type(PartialText)][:1] == ["Eight"]
    assert [f.dropped for f in driver.of_type(FinalText)] == ["no_speech", "no_speech"]


class EchoesItsPrompt(ScriptedTranscriber):
    """Once there is a prompt, answers as base did on 0.57 s of room noise after the final
    "Eight of spades, four of clothes, seven of hearts.": a phrase of it said back."""

    def transcribe(self, audio, options, *, final=True):
        if options.prompt:
            # A final with a partial's figures is dropped as silence already; this one is not.
            no_speech_prob = 0.3 if final else 0.77
            return hallucination(" Eight of spades, five of hearts.",
                                 no_speech_prob=no_speech_prob, avg_logprob=-0.78)  # fmt: skip
        text = " Eight of spades, four of clubs, seven of hearts." if final else " Eight of"
        return hallucination(text, no_speech_prob=0.01, avg_logprob=-0.2)


def test_the_prompt_said_back_is_neither_shown_nor_final():
    driver = Driver(energy_session(), EchoesItsPrompt())
    driver.feed(TWO_UTTERANCES, 3200)
    finals = driver.of_type(FinalText)
    assert [f.text for f in finals] == ["Eight of spades, four of clubs, seven of hearts.", ""]
    assert finals[1].dropped == "prompt_echo"
    partials = driver.of_type(PartialText)
    assert partials and all(p.utterance_id == finals[0].utterance_id for p in partials)


def test_a_partial_of_punctuation_alone_shows_nothing():
    driver = Driver(energy_session(), HeardButCalledSilence(" ..."))
    driver.feed(TWO_UTTERANCES, 3200)
    assert not driver.of_type(PartialText)


def test_repetition_loop_is_dropped():
    answer = hallucination(" the the the the the the the", compression_ratio=3.1)
    driver = Driver(energy_session(), FixedTranscriber(answer))
    driver.feed(TWO_UTTERANCES, 3200)
    assert driver.of_type(FinalText)[0].dropped == "repetition"


def test_prompt_resets_after_a_long_silence():
    driver = Driver(
        energy_session(prompt_reset_silence_ms=2000), ScriptedTranscriber(["first", "second"])
    )
    driver.feed(pcm16(bursts(500, 1500, 3000, 1500, 800)), 3200)
    finals = driver.of_type(FinalText)
    assert finals[1].prompt == ""


def test_prompt_resets_when_the_language_changes():
    class Switching(ScriptedTranscriber):
        finals = 0

        def transcribe(self, audio, options, *, final=True):
            answer = super().transcribe(audio, options, final=final)
            self.finals += final
            language = "en" if self.finals < 2 else "de"  # from the second final on
            return Transcription(answer.segments, language=language, backend="t")

    driver = Driver(energy_session(), Switching(["one", "two", "three"]))
    driver.feed(pcm16(bursts(500, 1500, 1000, 1500, 1000, 1500, 1000)), 3200)
    finals = driver.of_type(FinalText)
    languages = [f.language for f in finals]
    assert "de" in languages
    first_de = languages.index("de")
    # The utterance after the switch no longer carries the English text.
    if first_de + 1 < len(finals):
        assert "one" not in finals[first_de + 1].prompt


def test_commit_ends_the_utterance_now():
    driver = Driver(energy_session(), ScriptedTranscriber(["pushed to talk"]))
    driver.feed(pcm16(bursts(300, 1000)), 1600)
    driver.answer(driver.session.receive_commit())
    final = driver.of_type(FinalText)[0]
    assert final.reason == "commit"
    assert final.end_samples == driver.session.position_samples


def test_end_of_stream_flushes_the_last_utterance_then_drains():
    driver = Driver(energy_session(), ScriptedTranscriber(["cut off"]))
    driver.feed(pcm16(bursts(300, 1000)), 1600)
    driver.close()
    tail = [type(e) for e in driver.events if not isinstance(e, TranscribeRequest | PartialText)]
    assert tail[-3:] == [UtteranceStopped, FinalText, SessionDrained]
    assert driver.of_type(FinalText)[0].reason == "end_of_stream"


def test_a_failed_final_is_reported_and_later_utterances_go_on():
    driver = Driver(energy_session(), ScriptedTranscriber(["a", "b"]))
    driver.feed(TWO_UTTERANCES, 3200, hold=True)
    first_final = next(r for r in driver.held if r.kind is RequestKind.FINAL)
    driver.answer(driver.session.receive_transcription_failed(first_final, "model crashed"))
    errors = driver.of_type(SessionError)
    assert errors and errors[0].utterance_id == 1 and "model crashed" in errors[0].message
    second_final = next(
        e
        for e in driver.of_type(TranscribeRequest)
        if e.kind is RequestKind.FINAL and e.utterance_id == 2
    )
    driver.reply(second_final)
    assert [f.utterance_id for f in driver.of_type(FinalText)] == [2]


def test_a_failed_final_keeps_its_audio_for_a_retry_that_gives_its_final():
    session = energy_session()
    driver = Driver(session, ScriptedTranscriber(["retried words"]))
    driver.feed(pcm16(bursts(500, 1500, 1000)), 3200, hold=True)
    first_final = next(r for r in driver.held if r.kind is RequestKind.FINAL)
    driver.answer(session.receive_transcription_failed(first_final, "remote down"))
    (error,) = driver.of_type(SessionError)
    assert error.utterance_id == 1 and "utterance.retry" in error.message
    (retry,) = session.receive_retry(1)
    assert retry.kind is RequestKind.FINAL and np.array_equal(retry.audio, first_final.audio)
    assert session.receive_retry(1) == []  # already on its way
    driver.session.receive_end_of_stream()
    assert not session.closed  # the retry is still owed a final
    driver.reply(retry)
    final = driver.of_type(FinalText)[-1]
    assert (final.utterance_id, final.text, final.retried) == (1, "retried words", True)
    assert final.end_samples == first_final.end_samples
    assert isinstance(driver.events[-1], SessionDrained)
    with pytest.raises(SessionClosing):
        session.receive_retry(1)


def test_retrying_an_utterance_that_did_not_fail_is_refused():
    session = energy_session()
    with pytest.raises(InvalidMessage, match="no failed final") as caught:
        session.receive_retry(7)
    assert caught.value.code == "unknown_utterance"


def test_streamed_partial_text_is_shown_as_it_grows_without_moving_stable_words():
    session = energy_session()
    driver = Driver(session, ScriptedTranscriber(["one two three four"]))
    driver.feed(pcm16(bursts(300, 1200)), 3200, hold=True)
    partial = next(r for r in driver.held if r.kind is RequestKind.PARTIAL)
    shown = []
    for text in ["one", "one two", "one", "one two three"]:
        shown += session.receive_partial_progress(partial, text)
    assert [e.text for e in shown] == ["one", "one two", "one two three"]  # never shrinks
    assert all(e.stable_text == "" for e in shown)  # progress moves no word into stable text


def test_odd_byte_count_is_an_audio_error_and_the_session_goes_on():
    session = energy_session()
    with pytest.raises(InvalidAudio, match="even number of bytes"):
        session.receive_audio(b"\x01\x02\x03")
    session.receive_audio(pcm16(bursts(100)))


def test_input_after_close_is_refused():
    session = energy_session()
    session.receive_end_of_stream()
    with pytest.raises(SessionClosing):
        session.receive_audio(b"\x00\x00")
    with pytest.raises(SessionClosing):
        session.receive_commit()


def test_updates_are_validated_and_audio_format_is_fixed_once_audio_flows():
    session = energy_session()
    with pytest.raises(InvalidMessage, match="sample_rate") as caught:
        session.receive_update({"sample_rate": 22050})
    assert caught.value.code == "unsupported_sample_rate"
    with pytest.raises(InvalidMessage, match="silence_duraton_ms") as caught:
        session.receive_update({"silence_duraton_ms": 300})
    assert caught.value.code == "invalid_session"
    session.receive_update({"sample_rate": 48000, "silence_duration_ms": 300})
    session.receive_audio(pcm16(bursts(100)))
    with pytest.raises(InvalidMessage, match="cannot change after audio"):
        session.receive_update({"sample_rate": 16000})
    session.receive_update({"language": "de"})
    assert session.options.language == "de"


def per_utterance(events, *, partial_requests: bool = True):
    """Per utterance: its partial requests, its final requests, its VAD events and its finals,
    each in order.

    What depends on when answers arrive is left out: the interleaving of these streams (a
    final request waits for the previous final), the
    partials (an answer that comes after the final request is ignored), the prompts of partial
    requests and the prefix of final requests (the stable words known by then), and
    ``inference_ms``. ``partial_requests=False`` leaves out the partial requests too: until an
    utterance shows text one is asked for while the newest is unanswered, so a message of
    several frames, which leaves every answer for after it, asks for more.
    """
    grouped = {}
    for event in events:
        if isinstance(event, TranscribeRequest):
            if event.kind is RequestKind.PARTIAL and not partial_requests:
                continue
            key = (event.kind, event.start_samples, event.end_samples)
            if event.kind is RequestKind.FINAL:
                key += (event.options.prompt,)
            stream = f"{event.kind.name} requests"
        elif isinstance(event, UtteranceStarted | UtteranceStopped):
            key, stream = event, "vad"
        elif isinstance(event, FinalText):
            key, stream = replace(event, inference_ms=0.0), "finals"
        else:
            continue
        grouped.setdefault((event.utterance_id, stream), []).append(key)
    return grouped


def run_split(pcm: bytes, cuts: list[int], *, partial_requests: bool = False) -> dict:
    driver = Driver(energy_session(), ScriptedTranscriber(["one two three four", "five six"]))
    points = sorted({cut - cut % 2 for cut in cuts if 0 < cut < len(pcm)})
    for start, end in zip([0, *points], [*points, len(pcm)], strict=False):
        driver.feed(pcm[start:end])
    driver.close()
    return per_utterance(driver.events, partial_requests=partial_requests)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, len(TWO_UTTERANCES)), max_size=40))
def test_events_do_not_depend_on_how_audio_is_split(cuts):
    assert run_split(TWO_UTTERANCES, cuts) == run_split(TWO_UTTERANCES, [])


def test_frame_by_frame_equals_whole():
    frame_cuts = list(range(0, len(TWO_UTTERANCES), 960))
    assert run_split(TWO_UTTERANCES, frame_cuts) == run_split(TWO_UTTERANCES, [])


def test_partials_are_asked_for_alike_in_frames_and_in_smaller_messages():
    # Answers come after each message; the pacing decides once per 30 ms VAD frame, so
    # messages of a frame or less give the same partial requests.
    frame_cuts = list(range(0, len(TWO_UTTERANCES), 960))
    ten_ms_cuts = list(range(0, len(TWO_UTTERANCES), 320))
    by_frame = run_split(TWO_UTTERANCES, frame_cuts, partial_requests=True)
    assert run_split(TWO_UTTERANCES, ten_ms_cuts, partial_requests=True) == by_frame
    assert by_frame[(1, "PARTIAL requests")]


def test_a_long_stream_holds_a_bounded_audio_buffer():
    # Ten minutes of speech with pauses and with speech that never pauses (forced cuts): the
    # session keeps only the current utterance and a short pre-roll, never the stream's past.
    options = {"max_utterance_duration_ms": 15_000}
    session = energy_session(**options)
    driver = Driver(session, ScriptedTranscriber())
    cycle = pcm16(bursts(600, 2500, 1200, 40_000, 800, 7000))
    held_ms = []
    for _ in range(12):
        for offset in range(0, len(cycle), 3200):
            driver.answer(session.receive_audio(cycle[offset : offset + 3200]))
            held_ms.append(session.buffered_samples / 16)
            assert session.pending_utterances <= 2
    driver.close()
    lookback_ms = 300 + 250 * 8 + 1000  # pre-roll, onset confirmation, margin
    assert max(held_ms) <= options["max_utterance_duration_ms"] + lookback_ms
    first, last = held_ms[: len(held_ms) // 12], held_ms[-len(held_ms) // 12 :]
    assert max(last) <= max(first) + 100  # the twelfth cycle holds no more than the first
    assert len(driver.of_type(FinalText)) >= 12 * 5


def test_a_vad_this_server_cannot_run_is_a_clear_session_error():
    from vad.errors import DetectorUnavailable

    def unavailable(options):
        raise DetectorUnavailable("onnxruntime is not installed")

    with pytest.raises(InvalidMessage, match="vad 'silero' is not available") as caught:
        Session("s", SessionOptions(vad="silero"), detector_factory=unavailable)
    assert caught.value.code == "invalid_session"
