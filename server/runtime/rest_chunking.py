"""Long uploads cut into chunks with VAD (OpenAI's ``chunking_strategy``), transcribed as
separate scheduler jobs and stitched back with their times.

``auto``: webrtc VAD with a 500 ms silence window. A ``server_vad`` object: Silero at its
``threshold`` (default 0.5), with its ``prefix_padding_ms`` (300) and ``silence_duration_ms``
(200). Uploads longer than ``AUTO_CHUNK_S`` are chunked with ``auto`` even when the request
does not ask, because one request never holds more than ``window`` jobs in the scheduler at a
time: a long file then takes turns with everything else instead of holding a worker for
minutes, and a short request or a live session's final gets the next free worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.core.errors import ApiError
from server.core.transcription import (
    DecodeOptions,
    RequestKind,
    Segment,
    TranscribeRequest,
    Transcription,
    Word,
)
from server.core.units import STREAM_RATE_HZ
from server.runtime.scheduler import InferenceScheduler
from vad.chunking import merge_regions, speech_regions
from vad.detectors import make_detector
from vad.segmenter import SegmenterOptions

AUTO_CHUNK_S = 30  # beyond one Whisper window, cut at pauses (VAD)
# Pauses are joined into chunks up to this long: shorter chunks let a short request or a live
# final in sooner (a running chunk cannot be interrupted); one Whisper window is the most.
CHUNK_MAX_S = 15
_request_ids = itertools.count(2_000_000_000)


@dataclass(frozen=True, slots=True)
class ChunkingStrategy:
    vad: str = "webrtc"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


AUTO = ChunkingStrategy()


def parse_chunking(form: Any) -> ChunkingStrategy | None:
    """``chunking_strategy`` as ``auto``, a JSON object, or the bracketed fields the openai
    SDK sends for an object (``chunking_strategy[type]=server_vad``)."""
    raw = form.get("chunking_strategy")
    fields = {
        key[len("chunking_strategy[") : -1]: value
        for key, value in form.multi_items()
        if key.startswith("chunking_strategy[") and key.endswith("]")
    }
    if raw is None and not fields:
        return None
    if raw == "auto":
        return AUTO
    if raw is not None:
        try:
            fields = json.loads(raw)
        except ValueError:
            raise _bad("chunking_strategy must be 'auto' or a server_vad object") from None
        if not isinstance(fields, dict):
            raise _bad("chunking_strategy must be 'auto' or a server_vad object")
    if fields.get("type") != "server_vad":
        raise _bad("chunking_strategy.type must be 'server_vad'")
    unknown = set(fields) - {"type", "threshold", "prefix_padding_ms", "silence_duration_ms"}
    if unknown:
        raise _bad(f"unknown chunking_strategy fields: {', '.join(sorted(unknown))}")
    try:
        threshold = float(fields.get("threshold", 0.5))
        padding = int(fields.get("prefix_padding_ms", 300))
        silence = int(fields.get("silence_duration_ms", 200))
    except (TypeError, ValueError):
        raise _bad("chunking_strategy numbers must be numbers") from None
    if not 0.0 < threshold < 1.0 or not 0 <= padding <= 2000 or not 100 <= silence <= 10_000:
        raise _bad(
            "chunking_strategy: threshold in (0, 1), prefix_padding_ms 0-2000, "
            "silence_duration_ms 100-10000"
        )
    return ChunkingStrategy("silero", threshold, padding, silence)


def _bad(message: str) -> ApiError:
    return ApiError(400, message, param="chunking_strategy")


def plan_chunks(samples: np.ndarray, strategy: ChunkingStrategy) -> list[tuple[int, int]]:
    """Chunk boundaries (sample positions). Blocking: run it in a thread."""
    detector = make_detector(strategy.vad, aggressiveness=2, threshold=strategy.threshold)
    options = SegmenterOptions(
        prefix_padding_ms=strategy.prefix_padding_ms,
        silence_duration_ms=strategy.silence_duration_ms,
        min_speech_duration_ms=100,
        max_utterance_duration_ms=CHUNK_MAX_S * 1000,
    )
    regions = speech_regions(samples.astype(np.float32), detector, options)
    return merge_regions(regions, CHUNK_MAX_S * STREAM_RATE_HZ)


async def transcribe_chunks(
    scheduler: InferenceScheduler,
    samples: np.ndarray,
    chunks: list[tuple[int, int]],
    options: DecodeOptions,
    *,
    window: int,
) -> AsyncIterator[Transcription]:
    """Each chunk's answer, in order, with times shifted to the whole file. At most ``window``
    of this request's jobs are in the scheduler at once."""
    session_id = "rest_" + uuid.uuid4().hex[:12]
    pending: list[tuple[int, asyncio.Future[Transcription]]] = []
    upcoming = iter(chunks)
    try:
        while True:
            while len(pending) < window:
                chunk = next(upcoming, None)
                if chunk is None:
                    break
                pending.append(
                    (chunk[0], scheduler.submit(_job(session_id, samples, chunk, options)))
                )
            if not pending:
                return
            offset, future = pending.pop(0)
            await asyncio.wait({future})
            if future.cancelled():
                raise ApiError(
                    503, "the server is busy; the request was shed", error_type="server_error"
                )
            yield shifted(future.result(), offset / STREAM_RATE_HZ)
    finally:
        for _, future in pending:
            future.cancel()
        scheduler.cancel_session(session_id)


def _job(
    session_id: str, samples: np.ndarray, chunk: tuple[int, int], options: DecodeOptions
) -> TranscribeRequest:
    start, end = chunk
    request_id = next(_request_ids)
    return TranscribeRequest(
        request_id=request_id,
        session_id=session_id,
        utterance_id=request_id,
        kind=RequestKind.FINAL,
        audio=samples[start:end],
        options=options,
        start_samples=start,
        end_samples=end,
        bulk=True,
    )


def shifted(answer: Transcription, offset_s: float) -> Transcription:
    """``answer`` with every time moved by ``offset_s``."""
    segments = tuple(
        dataclasses.replace(
            segment,
            start_s=segment.start_s + offset_s,
            end_s=segment.end_s + offset_s,
            seek=segment.seek + int(offset_s * 100),
            words=tuple(
                Word(word.word, word.start_s + offset_s, word.end_s + offset_s, word.probability)
                for word in segment.words
            ),
        )
        for segment in answer.segments
    )
    return dataclasses.replace(answer, segments=segments)


def merged(answers: list[Transcription], duration_s: float) -> Transcription:
    segments: tuple[Segment, ...] = tuple(s for answer in answers for s in answer.segments)
    language = next((answer.language for answer in answers if answer.language), None)
    first = answers[0] if answers else Transcription(segments=())
    return dataclasses.replace(
        first,
        segments=segments,
        language=language,
        duration_s=duration_s,
        inference_ms=sum(answer.inference_ms for answer in answers),
    )
