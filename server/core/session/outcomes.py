"""The events an utterance's answers become: partials on screen, finals, failures, and the
failed finals kept for a retry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from server.core.agreement import continuation_after, words_of
from server.core.errors import InvalidMessage
from server.core.events import Event, FinalText, PartialText, SessionError
from server.core.quality import (
    QualityThresholds,
    cut_repetition_loop,
    ends_in_a_loop,
    filter_answer,
    kept_words,
)
from server.core.session.utterance import FailedUtterance, Utterance, UtteranceState
from server.core.transcription import TranscribeRequest, Transcription

# Utterances whose final failed keep their audio for a retry; beyond this many, the oldest go.
MAX_RETAINED_FAILURES = 16


class FailedFinals:
    """Failed finals kept for ``utterance.retry``, oldest first, at most
    ``MAX_RETAINED_FAILURES``."""

    def __init__(self) -> None:
        self._by_id: dict[int, FailedUtterance] = {}

    def keep(self, utterance: Utterance, request: TranscribeRequest) -> None:
        assert utterance.end_samples is not None
        self._by_id[utterance.utterance_id] = FailedUtterance(
            utterance.utterance_id,
            utterance.start_samples,
            utterance.end_samples,
            utterance.end_reason,
            request.audio,
        )
        while len(self._by_id) > MAX_RETAINED_FAILURES:
            del self._by_id[next(iter(self._by_id))]

    def retry(
        self, utterance_id: int, make_request: Callable[[FailedUtterance], TranscribeRequest]
    ) -> TranscribeRequest | None:
        """A new final request for a kept utterance; ``None`` while one is on its way."""
        failed = self._by_id.get(utterance_id)
        if failed is None:
            raise InvalidMessage(
                f"utterance {utterance_id} has no failed final to retry "
                f"(kept: {sorted(self._by_id) or 'none'})",
                code="unknown_utterance",
            )
        if failed.retry_request is not None:
            return None
        failed.retry_request = make_request(failed)
        return failed.retry_request

    def retrying(self, request: TranscribeRequest) -> FailedUtterance | None:
        """The failed utterance ``request`` retries, if it does."""
        failed = self._by_id.get(request.utterance_id)
        return failed if failed is not None and failed.retry_request is request else None

    def forget(self, utterance_id: int) -> None:
        del self._by_id[utterance_id]

    @property
    def any_retrying(self) -> bool:
        return any(failed.retry_request for failed in self._by_id.values())


def failure_event(utterance_id: int, message: str) -> SessionError:
    return SessionError(
        "transcription_failed",
        f"utterance {utterance_id} could not be transcribed: {message}; its audio is kept: "
        "send utterance.retry to try again",
        utterance_id,
    )


def final_text(
    utterance_id: int,
    span: tuple[int, int],
    reason: str,
    request: TranscribeRequest,
    answer: Transcription,
    filtered: tuple[str, str | None],
    session_language: str | None,
    thresholds: QualityThresholds,
) -> FinalText:
    """The final event for an answer, with the text the quality filter (and agreement) left,
    and the words of the segments it kept when the session asked for words."""
    text, dropped = filtered
    options = request.options
    return FinalText(
        utterance_id=utterance_id,
        text=text,
        start_samples=span[0],
        end_samples=span[1],
        reason=reason,
        language=answer.language or session_language,
        prompt=options.prompt,
        backend=answer.backend,
        inference_ms=answer.inference_ms,
        dropped=dropped,
        usage=answer.usage,
        failover_reason=answer.failover_reason,
        words=kept_words(answer, thresholds, options.hotwords, options.prompt)
        if options.word_timestamps
        else (),
    )


def retried_final(
    failed: FailedUtterance,
    answer: Transcription,
    thresholds: QualityThresholds,
    session_language: str | None,
) -> FinalText:
    """The final of a failed utterance that a retry transcribed (out of order, ``retried``)."""
    assert failed.retry_request is not None
    final = final_text(
        failed.utterance_id,
        (failed.start_samples, failed.end_samples),
        failed.reason,
        failed.retry_request,
        answer,
        filter_answer(answer, thresholds, failed.retry_request.options),
        session_language,
        thresholds,
    )
    return dataclasses.replace(final, retried=True)


def show_partial(
    utterance: Utterance, stable: str, tail: str, request: TranscribeRequest, backend: str
) -> PartialText:
    """Remember what the partial shows (stable words, then the tail), and make its event."""
    utterance.last_partial = (stable, tail)
    return PartialText(
        utterance.utterance_id,
        " ".join(part for part in (stable, tail) if part),
        stable,
        utterance.start_samples,
        request.end_samples,
        backend,
    )


def apply_partial(
    utterance: Utterance,
    request: TranscribeRequest,
    answer: Transcription,
    thresholds: QualityThresholds,
) -> list[Event]:
    """A partial answer: its words go through the agreement policy (as a settled hypothesis
    when its audio ends in a pause), and the partial on screen changes if what it shows does.
    One that was on its way when the speaker paused still counts; once speech has ended the
    final is coming and the stable words stay as they are."""
    settled = request.request_id in utterance.settled_partial_ids
    utterance.settled_partial_ids.discard(request.request_id)
    if request.request_id <= utterance.applied_partial_id or not utterance.open:
        return []
    utterance.applied_partial_id = request.request_id
    text, _ = filter_answer(answer, thresholds.for_partials(), request.options)
    utterance.partial_looped = ends_in_a_loop(text)
    text = _words_to_show(text)
    if not text and request.options.first_words:
        return _tentative_first_words(utterance, request, answer, thresholds)
    agreement = utterance.agreement
    hear = agreement.receive_settled_hypothesis if settled else agreement.receive_hypothesis
    stable, unstable = hear(text)
    if text.strip():
        utterance.voted_partial_id = request.request_id
    if (stable, unstable) == utterance.last_partial or not (stable or unstable):
        return []
    return [show_partial(utterance, stable, unstable, request, answer.backend)]


def _words_to_show(text: str) -> str:
    """A partial's text up to where it loops; "" for "." or "...": nothing to show, and not
    yet the first words."""
    text = cut_repetition_loop(text)
    return text if any(character.isalnum() for character in text) else ""


def _tentative_first_words(
    utterance: Utterance,
    request: TranscribeRequest,
    answer: Transcription,
    thresholds: QualityThresholds,
) -> list[Event]:
    """First words the model is not yet sure of: shown, so the speaker sees they are heard,
    but kept out of the agreement (they would vote wrong words stable), and the utterance
    goes on chasing its first sure words."""
    text, _ = filter_answer(answer, thresholds.for_first_words(), request.options)
    text = _words_to_show(text)
    if not text or utterance.last_partial == ("", text):
        return []
    return [show_partial(utterance, "", text, request, answer.backend)]


def hear_speculative(
    utterance: Utterance, answer: Transcription, thresholds: QualityThresholds
) -> list[Event]:
    """A speculative final answered while the speaker is still paused is a hypothesis of the
    utterance so far, decoded whole: the agreement hears it as a settled hypothesis, so the
    words it confirms are stable (shown, and sent as deltas). If speech ends there, the final
    is this same answer; if it resumes, these words stay stable, as a partial's would."""
    request = utterance.final_request
    if utterance.state is not UtteranceState.PAUSED or request is None:
        return []
    text, _ = filter_answer(answer, thresholds, request.options)
    stable, unstable = utterance.agreement.receive_settled_hypothesis(text)
    if (stable, unstable) == utterance.last_partial or not (stable or unstable):
        return []
    return [show_partial(utterance, stable, unstable, request, answer.backend)]


def progress_partial(
    utterance: Utterance, request: TranscribeRequest, text: str, backend: str
) -> list[Event]:
    """Text a streaming backend has decoded so far: shown when it says more than the partial
    on screen. It moves no word into the stable text: only complete hypotheses do that."""
    if request.request_id <= utterance.applied_partial_id or utterance.final_request is not None:
        return []
    stable = utterance.agreement.stable_text
    tail_words = continuation_after(utterance.agreement.stable_words, words_of(text))
    shown_tail = utterance.last_partial[1] if utterance.last_partial else ""
    if len(tail_words) <= len(words_of(shown_tail)):
        return []  # a new request starts from the utterance's beginning: never shrink
    return [show_partial(utterance, stable, " ".join(tail_words), request, backend)]
