import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audio import bursts, noise, silence, tone
from vad.detectors import EnergyDetector, make_detector
from vad.frames import FrameAssembler
from vad.segmenter import (
    Segmenter,
    SegmenterOptions,
    SegmenterState,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)

MS = 16  # samples per millisecond


def run_segmenter(samples, options=None, splits=None):
    segmenter = Segmenter(EnergyDetector(), options or SegmenterOptions())
    assembler = FrameAssembler(segmenter.frame_samples)
    events = []
    cuts = sorted(set(splits or []))
    for start, end in zip([0, *cuts], [*cuts, len(samples)], strict=False):
        for frame in assembler.push(samples[start:end]):
            events += [(segmenter.position_samples, e) for e in segmenter.receive_frame(frame)]
    events += [(segmenter.position_samples, e) for e in segmenter.force_end("end_of_stream")]
    return [e for _, e in events]


def test_silence_and_quiet_noise_give_no_utterance():
    assert run_segmenter(silence(2000)) == []
    assert run_segmenter(noise(3000, level=0.001)) == []


def test_burst_edges_land_on_known_samples_with_padding():
    # 1 s silence, 2 s tone, 1 s silence: tone from sample 16000 to 48000.
    events = run_segmenter(bursts(1000, 2000, 1000))
    started, paused, ended = events
    # The tone begins inside the frame starting at 15840 (frames are 480 samples).
    assert started == SpeechStarted(15840 - 300 * MS)
    # Last voiced frame ends at 48000 (frames of 480 divide 48000); end padding 200 ms.
    assert paused == SpeechPaused(48000 + 200 * MS)
    assert ended == SpeechEnded(48000 + 200 * MS, "silence")


def test_short_click_is_not_speech():
    events = run_segmenter(bursts(1000, 100, 1000))
    assert events == []


def test_speech_resuming_before_the_silence_window_closes_is_one_utterance():
    events = run_segmenter(bursts(500, 1000, 300, 1000, 1000))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded]


def test_utterances_never_overlap_even_with_long_prefix_padding():
    options = SegmenterOptions(prefix_padding_ms=1500, silence_duration_ms=300)
    events = run_segmenter(bursts(500, 1000, 600, 1000, 500), options)
    starts = [e.start_samples for e in events if isinstance(e, SpeechStarted)]
    ends = [e.end_samples for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == len(ends) == 2
    assert starts[1] >= ends[0]


def test_long_speech_is_cut_at_the_quietest_point_within_the_maximum():
    # 20 s of tone with a quieter dip around 13 s: the cut must land in the dip.
    signal = tone(20_000)
    dip = slice(13_000 * MS, 13_100 * MS)
    signal[dip] *= 0.2  # still voiced for the energy detector (-40 dBFS), but quietest
    options = SegmenterOptions(max_utterance_duration_ms=15_000)
    events = run_segmenter(np.concatenate([silence(500), signal, silence(1000)]), options)
    cut_ends = [e for e in events if isinstance(e, SpeechEnded) and e.reason == "max_duration"]
    assert len(cut_ends) == 1
    cut = cut_ends[0].end_samples
    assert (500 + 13_000) * MS <= cut < (500 + 13_100) * MS
    restarted = events[events.index(cut_ends[0]) + 1]
    assert restarted == SpeechStarted(cut)


def test_a_short_pause_ends_an_utterance_only_once_it_is_long():
    # 3 s of speech, a 300 ms pause, 6 s more, a 300 ms pause, then 2 s: the first pause comes
    # before the utterance is 7.5 s long (half the 15 s maximum) and does not end it; the
    # second comes after, and does.
    events = run_segmenter(bursts(500, 3000, 300, 6000, 300, 2000, 1000))
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert [e.reason for e in ends] == ["silence", "silence"]
    first_end_ms = ends[0].end_samples / MS
    assert 500 + 3000 + 300 + 6000 <= first_end_ms <= 500 + 3000 + 300 + 6000 + 300
    # A window longer than the short pause is kept where the client asked for a shorter one.
    quick = SegmenterOptions(silence_duration_ms=200, long_utterance_silence_ms=250)
    ends = [
        e for e in run_segmenter(bursts(500, 3000, 300, 1000), quick) if isinstance(e, SpeechEnded)
    ]
    assert len(ends) == 2


def test_commit_promotes_a_short_candidate():
    segmenter = Segmenter(EnergyDetector(), SegmenterOptions(min_speech_duration_ms=500))
    assembler = FrameAssembler(480)
    for frame in assembler.push(np.concatenate([silence(300), tone(200)])):
        assert segmenter.receive_frame(frame) == []
    events = segmenter.force_end("commit")
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[1].reason == "commit"


def test_force_end_without_speech_does_nothing():
    segmenter = Segmenter(EnergyDetector(), SegmenterOptions())
    assert segmenter.force_end("commit") == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 100_000), max_size=30))
def test_events_do_not_depend_on_how_audio_is_split(splits):
    signal = bursts(700, 1200, 300, 900, 800, 2500, 600)
    assert run_segmenter(signal, splits=splits) == run_segmenter(signal)


def test_webrtc_detector_calls_digital_silence_silence():
    detector = make_detector("webrtc", aggressiveness=3)
    assert detector.speech_probability(silence(30)) == 0.0


def test_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown VAD 'nope'"):
        make_detector("nope")


def test_silero_and_webrtc_find_the_speech_in_a_real_recording():
    from tests.support import require, shared_file

    try:
        detector = make_detector("silero")
    except Exception as exc:  # faster-whisper's assets or onnxruntime missing
        require(False, f"silero unavailable: {exc}")
    from server.core.audio_files import decode_pcm16

    audio = decode_pcm16(shared_file("en_jfk.flac")).astype(np.float32) / 32768
    for segmenter_detector in (detector, make_detector("webrtc")):
        segmenter = Segmenter(segmenter_detector, SegmenterOptions())
        assembler = FrameAssembler(segmenter.frame_samples)
        events = []
        for frame in assembler.push(np.concatenate([audio, silence(1000)])):
            events += segmenter.receive_frame(frame)
        started = [e for e in events if isinstance(e, SpeechStarted)]
        ended = [e for e in events if isinstance(e, SpeechEnded)]
        assert 1 <= len(started) == len(ended) <= 6
        # JFK speaks from about 0.3 s to 10.6 s: the utterances cover that span.
        assert started[0].start_samples < 1.0 * 16000
        assert ended[-1].end_samples > 10.0 * 16000


def test_webrtc_never_calls_digital_silence_speech_after_noise():
    """WebRTC's VAD adapts its noise model and holds a decision over the frames after: after a
    stretch of noise it calls zeros speech. The detector overrules it on digital silence."""
    detector = make_detector("webrtc")
    frames = noise(240_000, level=0.2).reshape(-1, detector.frame_samples)  # 4 minutes
    for frame in frames:
        detector.speech_probability(frame)
    assert [detector.speech_probability(silence(30)) for _ in range(20)] == [0.0] * 20


def test_every_second_of_digital_silence_ends_an_utterance_in_a_long_session():
    """English files of the shared audio, twice over, each followed by a second of zeros: a
    client that pads its gaps so (or a muted microphone) gets an utterance end in every gap.
    Three minutes into such a stream WebRTC's VAD called 1.25 s of zeros speech and two files
    became one utterance."""
    from server.core.audio_files import decode_pcm16
    from tests.support import manifest, shared_file

    files = [row["file"] for row in manifest() if row["language"] == "en"] * 2
    segmenter = Segmenter(make_detector("webrtc"), SegmenterOptions())
    assembler = FrameAssembler(segmenter.frame_samples)
    still_speaking_after = []
    for index, name in enumerate(files):
        audio = decode_pcm16(shared_file(name)).astype(np.float32) / 32768
        for frame in assembler.push(np.concatenate([audio, silence(1000)])):
            segmenter.receive_frame(frame)
        if segmenter.state is not SegmenterState.IDLE:
            still_speaking_after.append((index, name))
    assert not still_speaking_after
