"""The requests a session sends to the model: one numbering, one prompt, one audio buffer."""

from __future__ import annotations

import dataclasses
import itertools

from server.core.options import SessionOptions
from server.core.prompt import PromptCarry
from server.core.session.audio_path import AudioBuffer
from server.core.session.utterance import FailedUtterance, Utterance, UtteranceState
from server.core.transcription import DecodeOptions, RequestKind, Samples, TranscribeRequest


class RequestMaker:
    def __init__(
        self,
        session_id: str,
        audio: AudioBuffer,
        prompt: PromptCarry,
        request_ids: itertools.count[int],
    ) -> None:
        self.session_id = session_id
        self.audio = audio
        self.prompt = prompt
        self.options = SessionOptions()  # the session keeps this current
        self._request_ids = request_ids

    def partial(self, utterance: Utterance, end: int, settled: bool = False) -> TranscribeRequest:
        """``settled``: its audio ends in a pause (the utterance remembers which are)."""
        request = self._request(utterance, RequestKind.PARTIAL, end, None)
        if not utterance.has_sure_words:
            options = dataclasses.replace(request.options, first_words=True)
            request = dataclasses.replace(request, options=options)
        utterance.earlier_partial_id = utterance.latest_partial_id
        utterance.latest_partial_id = request.request_id
        utterance.latest_partial_end = end
        if settled:
            utterance.settled_partial_ids.add(request.request_id)
        return request

    def final(self, utterance: Utterance, end: int, audio: Samples | None) -> TranscribeRequest:
        """``audio``: what the final covers, kept while it waited (``None``: cut it now)."""
        request = self._request(utterance, RequestKind.FINAL, end, audio)
        paused = utterance.state is UtteranceState.PAUSED or utterance.end_reason == "silence"
        options = dataclasses.replace(
            request.options, ends_in_silence=paused, partial_looped=utterance.partial_looped
        )
        return dataclasses.replace(request, options=options)

    def retry(self, failed: FailedUtterance) -> TranscribeRequest:
        return TranscribeRequest(
            request_id=next(self._request_ids),
            session_id=self.session_id,
            utterance_id=failed.utterance_id,
            kind=RequestKind.FINAL,
            audio=failed.audio,
            options=self.decode_options(),
            start_samples=failed.start_samples,
            end_samples=failed.end_samples,
        )

    def decode_options(self, kind: RequestKind = RequestKind.FINAL) -> DecodeOptions:
        return DecodeOptions(
            language=self.options.language,
            prompt=self.prompt.prompt(),
            carried_prompt_chars=len(self.prompt.carried),
            partial_backend=self.options.partial_backend,
            task=self.options.task,
            hotwords=", ".join(self.options.keywords),
            # Only finals: a partial's words are shown once and replaced.
            word_timestamps=self.options.wants_words and kind is RequestKind.FINAL,
        )

    def _request(
        self, utterance: Utterance, kind: RequestKind, end: int, audio: Samples | None
    ) -> TranscribeRequest:
        return TranscribeRequest(
            request_id=next(self._request_ids),
            session_id=self.session_id,
            utterance_id=utterance.utterance_id,
            kind=kind,
            audio=audio if audio is not None else self.audio.slice(utterance.start_samples, end),
            options=self.decode_options(kind),
            start_samples=utterance.start_samples,
            end_samples=end,
        )
