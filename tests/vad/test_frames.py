import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.audio import pcm16, tone
from vad.errors import AudioFormatError
from vad.frames import FrameAssembler, decode_pcm16, to_pcm16
from vad.resample import StreamResampler


def test_decode_round_trips_pcm16():
    samples = tone(50)
    assert to_pcm16(decode_pcm16(pcm16(samples))) == pcm16(samples)


def test_odd_byte_count_is_refused_with_the_count():
    with pytest.raises(AudioFormatError, match="even number of bytes; this message has 3"):
        decode_pcm16(b"\x00\x01\x02")


@given(st.lists(st.integers(0, 2000), max_size=20))
def test_frames_do_not_depend_on_how_samples_arrive(splits):
    samples = np.arange(5000, dtype=np.float32)
    assembler = FrameAssembler(480)
    frames = []
    cuts = sorted({min(cut, len(samples)) for cut in splits})
    for start, end in zip([0, *cuts], [*cuts, len(samples)], strict=False):
        frames += assembler.push(samples[start:end])
    assert len(frames) == 5000 // 480
    np.testing.assert_array_equal(np.concatenate(frames), samples[: len(frames) * 480])
    assert assembler.pending_samples == 5000 % 480
    last = assembler.flush()
    assert last is not None and len(last) == 480


def test_unsupported_rate_is_refused_with_the_supported_list():
    with pytest.raises(AudioFormatError, match="unsupported sample rate 22050 Hz; supported: 8000"):
        StreamResampler(22050)


@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(rate):
    seconds = 1.0
    t = np.arange(int(rate * seconds)) / rate
    signal = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resampler = StreamResampler(rate)
    out = np.concatenate(
        [resampler.push(signal[i : i + 1234]) for i in range(0, len(signal), 1234)]
        + [resampler.flush()]
    )
    assert abs(len(out) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 440) < 2


def test_16k_passes_through_untouched():
    samples = tone(20)
    assert StreamResampler(16000).push(samples) is samples
