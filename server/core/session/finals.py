"""The utterances of a session from their start until their final is sent, in order.

Final requests are issued in utterance order, each once the previous final is known, because
each one's prompt carries the previous finals' text; finals leave in the same order, an
utterance whose answer came early waiting for the ones before it.
"""

from __future__ import annotations

from collections.abc import Callable

from server.core.events import Event, FinalText, RequestCancelled, SessionError, UtteranceCleared
from server.core.prompt import PromptCarry
from server.core.quality import QualityThresholds, filter_answer
from server.core.session.outcomes import FailedFinals, failure_event, final_text
from server.core.session.utterance import Utterance, UtteranceEvent, UtteranceState
from server.core.transcription import Samples, TranscribeRequest

# Makes a final request for an utterance: (utterance, end, audio) -> request.
FinalRequestFactory = Callable[[Utterance, int, Samples | None], TranscribeRequest]


class FinalsInOrder:
    def __init__(
        self,
        prompt: PromptCarry,
        thresholds: QualityThresholds,
        failed: FailedFinals,
        make_request: FinalRequestFactory,
    ) -> None:
        self.prompt = prompt
        self.thresholds = thresholds
        self.failed = failed
        self._make_request = make_request
        self._utterances: dict[int, Utterance] = {}

    def __len__(self) -> int:
        return len(self._utterances)

    def add(self, utterance: Utterance) -> None:
        self._utterances[utterance.utterance_id] = utterance

    def clear(self, utterance: Utterance) -> list[Event]:
        """Drop the utterance in progress (always the newest): it gets no final."""
        del self._utterances[utterance.utterance_id]
        events: list[Event] = [UtteranceCleared(utterance.utterance_id)]
        cancelled = utterance.clear()
        if cancelled is not None:
            events.append(RequestCancelled(cancelled.request_id))
        return events

    def get(self, utterance_id: int) -> Utterance | None:
        return self._utterances.get(utterance_id)

    def oldest_start_samples(self) -> int | None:
        """Where the oldest utterance still without its final starts (``None``: there is none)."""
        return next(iter(self._utterances.values())).start_samples if self._utterances else None

    def issue_requests(self) -> list[Event]:
        """Request the final of the first unfinished utterance if it wants one and has none."""
        for utterance in self._utterances.values():
            if utterance.has_outcome:
                continue
            if utterance.final_request is None and utterance.wanted_final_end is not None:
                # The model decodes the whole utterance freely; the final keeps the stable
                # words as they are when speech ends (partials still count while the speaker
                # is only paused), aligned to its answer (``LocalAgreement.finalize``).
                request = self._make_request(
                    utterance, utterance.wanted_final_end, utterance.final_audio
                )
                utterance.final_request = request
                utterance.final_audio = None
                return [request]
            return []
        return []

    def emit_ready(self, session_language: str | None) -> list[Event]:
        """Finals of ended utterances whose answers are in, oldest first, stopping at a gap."""
        events: list[Event] = []
        while self._utterances:
            utterance = next(iter(self._utterances.values()))
            if utterance.state is not UtteranceState.ANSWERED:
                break
            utterance.fire(UtteranceEvent.EMIT)
            del self._utterances[utterance.utterance_id]
            events.append(self._final_event(utterance, session_language))
            events += self.issue_requests()
        return events

    def _final_event(
        self, utterance: Utterance, session_language: str | None
    ) -> FinalText | SessionError:
        assert utterance.end_samples is not None and utterance.final_request is not None
        request = utterance.final_request
        if utterance.final_failed is not None:
            self.failed.keep(utterance, request)
            return failure_event(utterance.utterance_id, utterance.final_failed)
        answer = utterance.final_answer
        assert answer is not None
        text, dropped = filter_answer(answer, self.thresholds, request.options)
        if utterance.end_reason != "max_duration":
            text = utterance.agreement.finalize(text)
        # else: partials heard audio past the cut, so their stable words may belong to the next
        # utterance; the final of a forced cut is its own transcription, or words would repeat.
        final = final_text(
            utterance.utterance_id,
            (utterance.start_samples, utterance.end_samples),
            utterance.end_reason,
            request,
            answer,
            (text, dropped),
            session_language,
            self.thresholds,
        )
        if text and not dropped:
            self.prompt.receive_final(text, final.language)
        return final
