"""Cutting a whole recording into chunks for transcription (the REST API's
``chunking_strategy``): the speech regions the segmenter finds, merged while they fit one
Whisper window, so each chunk has context and no chunk splits a word. Silence between chunks
is left out, which is also what keeps the model from hallucinating on it."""

from __future__ import annotations

from vad.detectors import SpeechDetector
from vad.frames import FrameAssembler, Samples
from vad.resample import STREAM_RATE_HZ
from vad.segmenter import Segmenter, SegmenterOptions, SpeechEnded, SpeechStarted

WINDOW_S = 30  # Whisper hears 30 s at a time


def speech_regions(
    samples: Samples, detector: SpeechDetector, options: SegmenterOptions
) -> list[tuple[int, int]]:
    """(start, end) sample positions of each utterance the segmenter finds."""
    segmenter = Segmenter(detector, options)
    assembler = FrameAssembler(detector.frame_samples)
    regions: list[tuple[int, int]] = []
    start: int | None = None
    events = [
        event for frame in assembler.push(samples) for event in segmenter.receive_frame(frame)
    ]
    events += segmenter.force_end("end_of_stream")
    for event in events:
        if isinstance(event, SpeechStarted):
            start = event.start_samples
        elif isinstance(event, SpeechEnded) and start is not None:
            regions.append((start, min(event.end_samples, len(samples))))
            start = None
    return regions


def merge_regions(
    regions: list[tuple[int, int]], max_chunk_samples: int = WINDOW_S * STREAM_RATE_HZ
) -> list[tuple[int, int]]:
    """Neighbouring regions joined (with the pause between them) while the chunk still fits
    ``max_chunk_samples``; a longer region stays a chunk of its own."""
    chunks: list[tuple[int, int]] = []
    for start, end in regions:
        if chunks and end - chunks[-1][0] <= max_chunk_samples:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks
