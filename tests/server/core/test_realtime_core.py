"""The sans-I/O parts of the Realtime adapter: configuration mapping, client events, G.711, the
wire's event mapping; and what the core gained for it: clear, manual turns, G.711 sessions."""

from __future__ import annotations

import av
import numpy as np
import pytest

from server.backends.fake import ScriptedTranscriber
from server.core.errors import InvalidMessage
from server.core.events import (
    FinalText,
    PartialText,
    RequestCancelled,
    SessionError,
    UtteranceCleared,
    UtteranceStarted,
    UtteranceStopped,
)
from server.core.g711 import decode_g711
from server.core.options import SessionOptions, parse_options
from server.core.realtime.audio import decode_append
from server.core.realtime.client_events import (
    Append,
    Clear,
    Commit,
    Update,
    client_event_id,
    parse_client_event,
)
from server.core.realtime.config import (
    EAGERNESS_SILENCE_MS,
    RealtimeConfig,
    apply_update,
    checked_options,
    options_from_transcription_session,
)
from server.core.realtime.wire import RealtimeWire
from server.core.transcription import Word
from tests.audio import bursts, pcm16
from tests.server.session_driver import Driver, energy_session


@pytest.mark.parametrize("encoding", ["g711_ulaw", "g711_alaw"])
def test_g711_tables_invert_ffmpegs_encoder(encoding):
    rng = np.random.default_rng(1)
    samples = (rng.uniform(-0.9, 0.9, 4000) * 32767).astype(np.int16)
    codec = av.CodecContext.create("pcm_mulaw" if encoding == "g711_ulaw" else "pcm_alaw", "w")
    codec.sample_rate, codec.layout, codec.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    encoded = b"".join(bytes(packet) for packet in codec.encode(frame))
    decoded = decode_g711(encoded, encoding) * 32768
    # G.711 keeps 8 bits of a 16-bit sample: the error grows with the magnitude, ~3 %.
    error = np.abs(decoded - samples)
    assert np.all(error <= np.abs(samples.astype(np.float64)) * 0.07 + 16)
    assert len(set(encoded)) > 200  # the test covered most of the 256 codes


def test_g711_sessions_must_be_8_khz():
    with pytest.raises(InvalidMessage, match="8 kHz"):
        parse_options({"encoding": "g711_ulaw", "sample_rate": 16000})
    assert parse_options({"encoding": "g711_alaw", "sample_rate": 8000}).encoding == "g711_alaw"


def test_ga_updates_apply_only_the_fields_they_name():
    config = RealtimeConfig(model="gpt-4o-transcribe")
    config = apply_update(
        config,
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"language": "de", "prompt": "Namen.", "keywords": ["Ölz"]},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                    "noise_reduction": {"type": "near_field"},
                }
            },
            "include": ["item.input_audio_transcription.logprobs"],
        },
    )
    config = apply_update(
        config, {"type": "transcription", "audio": {"input": {"transcription": {"prompt": ""}}}}
    )
    values = config.option_values()
    assert values["encoding"] == "g711_ulaw" and values["sample_rate"] == 8000
    assert values["language"] == "de" and values["prompt"] == ""
    assert values["keywords"] == ("Ölz",)  # kept apart from the prompt
    assert values["silence_duration_ms"] == 700 and values["turn_detection"] == "vad"
    assert values["word_timestamps"] is True and config.noise_reduction == {"type": "near_field"}


def test_beta_updates_and_turn_detection_kinds():
    config = apply_update(
        RealtimeConfig(model="whisper-1"),
        {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
        },
    )
    assert config.model == "gpt-4o-mini-transcribe"
    assert config.option_values()["encoding"] == "g711_alaw"
    assert config.option_values()["silence_duration_ms"] == EAGERNESS_SILENCE_MS["low"]
    manual = apply_update(config, {"turn_detection": None})
    assert manual.option_values()["turn_detection"] == "manual"
    several = apply_update(
        config,
        {
            "type": "transcription",
            "audio": {"input": {"transcription": {"languages": ["en", "de"]}}},
        },
    )
    assert several.language is None  # several languages: detect


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        (
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            "session.audio.input.format.type",
        ),
        ({"input_audio_format": "mp3"}, "session.input_audio_format"),
        ({"turn_detection": {"type": "push_to_talk"}}, "session.turn_detection"),
        (
            {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 10}},
            "session.turn_detection.idle_timeout_ms",
        ),
        (
            {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}},
            "session.turn_detection.eagerness",
        ),
        ([], "session"),
    ],
)
def test_configs_we_refuse_name_the_field(session, param):
    with pytest.raises(InvalidMessage) as refused:
        apply_update(RealtimeConfig(model="m"), session)
    assert refused.value.param == param


def test_option_changes_are_validated_by_our_options():
    config = apply_update(RealtimeConfig(model="m"), {"turn_detection": {"silence_duration_ms": 5}})
    with pytest.raises(InvalidMessage, match="silence_duration_ms"):
        checked_options(config, SessionOptions(sample_rate=24000))


def test_a_token_pins_only_what_its_request_named():
    pinned, model = options_from_transcription_session(
        {
            "type": "transcription",
            "audio": {"input": {"transcription": {"language": "fr", "model": "whisper-1"}}},
        }
    )
    assert pinned == {"language": "fr"} and model == "whisper-1"
    pinned, _ = options_from_transcription_session(
        {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
        }
    )
    assert pinned == {"encoding": "pcm16", "sample_rate": 24000}


def test_client_events_parse_into_commands():
    assert parse_client_event('{"type": "input_audio_buffer.append", "audio": "AAA="}') == Append(
        "AAA="
    )
    assert parse_client_event('{"type": "input_audio_buffer.commit"}') == Commit()
    assert parse_client_event('{"type": "input_audio_buffer.clear"}') == Clear()
    assert parse_client_event('{"type": "transcription_session.update", "session": {}}') == Update(
        {}
    )
    assert client_event_id('{"type": "x", "event_id": "evt_9"}') == "evt_9"
    assert client_event_id("not json") is None
    assert decode_append("AAE=") == b"\x00\x01"
    with pytest.raises(InvalidMessage) as refused:
        decode_append(17)
    assert refused.value.param == "audio"


def wire(**config) -> RealtimeWire:
    return RealtimeWire("sess_x", RealtimeConfig(model="m", **config), beta=False)


def partial(utterance_id: int, stable: str) -> PartialText:
    return PartialText(utterance_id, stable + " tail", stable, 0, 16000)


def final(utterance_id: int, text: str, **fields) -> FinalText:
    return FinalText(utterance_id, text, 0, 32000, "silence", "en", "", "fake", 10.0, **fields)


def test_deltas_carry_only_new_stable_words_and_never_revise():
    w = wire()
    w.event(UtteranceStarted(1, 0), None)
    sent = [
        m
        for e in (
            partial(1, ""),
            partial(1, "Hello"),
            partial(1, "Hello"),
            partial(1, "Hello there"),
            partial(1, "Goodbye"),
        )
        for m in w.event(e, None)
    ]
    assert [m["delta"] for m in sent] == ["Hello", " there"]
    closing = w.event(final(1, "Hello there, friend."), None)
    assert [m["type"] for m in closing] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert closing[0]["delta"] == " friend." and closing[1]["transcript"] == "Hello there, friend."
    # A final that does not extend what was sent (a forced cut) gets no delta, only completed.
    w.event(UtteranceStarted(2, 40000), None)
    w.event(partial(2, "one two"), None)
    assert [m["type"] for m in w.event(final(2, "won too"), None)] == [
        "conversation.item.input_audio_transcription.completed"
    ]


def test_commits_chain_items_and_failures_name_their_item():
    w = wire()
    first = w.event(UtteranceStarted(1, 0), None)[0]["item_id"]
    stop = w.event(UtteranceStopped(1, 0, 16000, "silence"), None)
    assert [m["type"] for m in stop] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    second = w.event(UtteranceStarted(2, 20000), None)[0]["item_id"]
    commit = w.event(UtteranceStopped(2, 20000, 30000, "commit"), None)
    assert commit[0]["type"] == "input_audio_buffer.committed"  # a commit: no speech_stopped
    assert commit[0]["previous_item_id"] == first
    failed = w.event(SessionError("backend_error", "model down", utterance_id=2), None)[0]
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["item_id"] == second and failed["error"]["message"] == "model down"
    assert w.event(SessionError("x", "session-wide"), None)[0]["type"] == "error"


def test_logprobs_come_from_the_words_when_included():
    w = wire(include_logprobs=True)
    w.event(UtteranceStarted(1, 0), None)
    words = (Word(" Hi", 0.0, 0.3, 0.5), Word(" there", 0.3, 0.6, 1.0))
    completed = w.event(final(1, "Hi there", words=words), None)[-1]
    assert [p["token"] for p in completed["logprobs"]] == [" Hi", " there"]
    assert completed["logprobs"][0]["logprob"] == pytest.approx(np.log(0.5))
    assert completed["logprobs"][1]["bytes"] == list(b" there")


def test_manual_turns_end_only_at_a_commit():
    session = energy_session(turn_detection="manual")
    driver = Driver(session, ScriptedTranscriber(["all of it"]))
    driver.feed(pcm16(bursts(300, 800, 2000, 800, 1500)), 1600)  # pauses past any window
    assert not driver.of_type(UtteranceStopped)
    driver.answer(session.receive_commit())
    stopped = driver.of_type(UtteranceStopped)
    assert [s.reason for s in stopped] == ["commit"]
    assert [f.text for f in driver.of_type(FinalText)] == ["all of it"]


def test_clear_drops_the_utterance_in_progress_only():
    session = energy_session()
    driver = Driver(session, ScriptedTranscriber(["kept", "dropped"]))
    driver.feed(pcm16(bursts(300, 1000, 1000, 1500)), 1600)  # the second still speaking
    events = session.receive_clear()
    assert isinstance(events[0], UtteranceCleared) and events[0].utterance_id == 2
    assert all(isinstance(e, RequestCancelled) for e in events[1:])
    assert not session.speaking
    driver.answer(events)
    driver.feed(pcm16(bursts(500, 1000, 800)), 1600)
    driver.close()
    finals = driver.of_type(FinalText)
    assert [f.utterance_id for f in finals] == [1, 3]


def test_g711_session_reads_bytes_at_8_khz():
    samples = bursts(300, 1000, 800)
    mulaw = av.CodecContext.create("pcm_mulaw", "w")
    mulaw.sample_rate, mulaw.layout, mulaw.format = 8000, "mono", "s16"
    resampled = samples[::2]  # 16 kHz -> 8 kHz is enough for a tone burst
    frame = av.AudioFrame.from_ndarray(
        (resampled * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    encoded = b"".join(bytes(packet) for packet in mulaw.encode(frame))
    session = energy_session(encoding="g711_ulaw", sample_rate=8000)
    driver = Driver(session, ScriptedTranscriber(["tone"]))
    driver.feed(encoded, 400)
    driver.close()
    stopped = driver.of_type(UtteranceStopped)[0]
    assert abs((stopped.end_samples - stopped.start_samples) / 16 - (1000 + 300 + 200)) <= 60
