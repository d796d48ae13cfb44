"""Speech detectors behind one small interface, chosen by name.

A detector looks at one fixed-size frame of 16 kHz float samples and says how likely it is to
be speech. ``webrtc`` (the default) answers 0 or 1; ``silero`` answers a probability.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vad.errors import DetectorUnavailable
from vad.frames import Samples, frame_rms, to_pcm16
from vad.resample import STREAM_RATE_HZ

DETECTOR_KINDS = ("webrtc", "silero")

# Below this level a frame is digital silence (a muted microphone, a paused browser tab, the
# zeros a client pads gaps with), never speech: -70 dBFS is inaudible, and above the +-1 LSB of
# dither. Of the 10,476 frames WebRTC's VAD calls speech in ../shared/audio (11 languages),
# 45 are quieter: frames it holds "speech" over after the words.
DIGITAL_SILENCE_RMS = 10 ** (-70 / 20)


class SpeechDetector(Protocol):
    """Scores frames of ``frame_samples`` samples at 16 kHz."""

    frame_samples: int
    threshold: float

    def speech_probability(self, frame: Samples) -> float:
        """Probability in [0, 1] that the frame holds speech."""
        ...

    def reset(self) -> None:
        """Forget any state carried from earlier frames."""
        ...


class WebRtcDetector:
    """Google's WebRTC VAD (PyPI ``webrtcvad-wheels``): a fast GMM, decisions of 0 or 1."""

    threshold = 0.5

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30) -> None:
        import webrtcvad

        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError("webrtcvad aggressiveness must be 0, 1, 2 or 3")
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames must be 10, 20 or 30 ms")
        self._vad = webrtcvad.Vad(aggressiveness)
        self.frame_samples = STREAM_RATE_HZ * frame_ms // 1000

    def speech_probability(self, frame: Samples) -> float:
        # Every frame goes through the VAD, so its noise model and hangover move on as over
        # real audio; but its answer on digital silence is overruled. Its adaptive model holds
        # a "speech" decision over such frames: after 3.6 minutes of read speech it called
        # 1.25 s of zeros between two files speech, which joined two utterances and held the
        # first one's final back 5 s.
        voiced = self._vad.is_speech(to_pcm16(frame), STREAM_RATE_HZ)
        return 1.0 if voiced and not is_digital_silence(frame) else 0.0

    def reset(self) -> None:
        """The WebRTC VAD keeps only adaptive noise estimates, which may carry over."""


def is_digital_silence(frame: Samples) -> bool:
    return frame_rms(frame) < DIGITAL_SILENCE_RMS


class EnergyDetector:
    """Calls a frame speech when its RMS level passes ``threshold_dbfs``.

    Useless on real recordings with background noise, exact on synthetic signals: the core's
    tests use it to place utterance edges on known samples.
    """

    threshold = 0.5

    def __init__(self, threshold_dbfs: float = -40.0, frame_samples: int = 480) -> None:
        self.frame_samples = frame_samples
        self._threshold_rms = 10 ** (threshold_dbfs / 20)

    def speech_probability(self, frame: Samples) -> float:
        return 1.0 if frame_rms(frame) >= self._threshold_rms else 0.0

    def reset(self) -> None:
        """Stateless."""


def silero_model_path() -> Path:
    """Where faster-whisper keeps its copy of the Silero VAD model."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise DetectorUnavailable(
            "the silero VAD needs faster-whisper's assets: pip install 'streamscribe[local]'"
        )
    path = Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise DetectorUnavailable(f"Silero VAD model not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _silero_session() -> Any:
    """One ONNX session for every detector: ``run`` is thread-safe and the state is ours."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DetectorUnavailable(
            "the silero VAD needs onnxruntime: pip install 'streamscribe[local]'"
        ) from exc
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(silero_model_path()), providers=["CPUExecutionProvider"], sess_options=options
    )


class SileroDetector:
    """Silero VAD v6 run frame by frame, carrying its LSTM state and 64 samples of context."""

    frame_samples = 512
    _context_samples = 64

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("silero threshold must be between 0 and 1")
        self.threshold = threshold
        self._session = _silero_session()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._context_samples, dtype=np.float32)

    def speech_probability(self, frame: Samples) -> float:
        model_input = np.concatenate([self._context, frame])[np.newaxis, :]
        probability, self._h, self._c = self._session.run(
            None, {"input": model_input.astype(np.float32), "h": self._h, "c": self._c}
        )
        self._context = frame[-self._context_samples :].copy()
        return float(np.asarray(probability).reshape(-1)[0])


def make_detector(kind: str, *, aggressiveness: int = 2, threshold: float = 0.5) -> SpeechDetector:
    """Build a detector by name: ``webrtc`` or ``silero``."""
    if kind == "webrtc":
        return WebRtcDetector(aggressiveness)
    if kind == "silero":
        return SileroDetector(threshold)
    raise ValueError(f"unknown VAD {kind!r}; choose one of {', '.join(DETECTOR_KINDS)}")
