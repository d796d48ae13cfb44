"""Voice activity detection: PCM framing, resampling, speech detectors and the segmenter.

Nothing here performs I/O or imports anything from ``server`` or ``client``; the session core
builds on it.
"""

from vad.detectors import SpeechDetector, make_detector
from vad.errors import AudioFormatError, VadError
from vad.frames import FrameAssembler, decode_pcm16
from vad.resample import STREAM_RATE_HZ, SUPPORTED_RATES_HZ, StreamResampler
from vad.segmenter import (
    Segmenter,
    SegmenterOptions,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)

__all__ = [
    "STREAM_RATE_HZ",
    "SUPPORTED_RATES_HZ",
    "AudioFormatError",
    "FrameAssembler",
    "Segmenter",
    "SegmenterOptions",
    "SpeechDetector",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "StreamResampler",
    "VadError",
    "decode_pcm16",
    "make_detector",
]
