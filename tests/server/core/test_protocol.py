import pytest

from server.core import protocol
from server.core.errors import InvalidMessage
from server.core.events import FinalText, UtteranceStopped


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"no": "type"}', "invalid_message"),
        ('{"type": "dance"}', "unknown_message_type"),
        ('{"type": "session.update", "session": 3}', "invalid_message"),
        ("{" * 100_000, "message_too_large"),
    ],
)
def test_bad_client_messages_get_a_code(text, code):
    with pytest.raises(InvalidMessage) as caught:
        protocol.parse_client_message(text)
    assert caught.value.code == code


def test_client_messages_parse():
    assert protocol.parse_client_message('{"type": "input_audio.commit"}') == protocol.Commit()
    assert protocol.parse_client_message('{"type": "session.close"}') == protocol.Close()
    update = protocol.parse_client_message(
        '{"type": "session.update", "session": {"language": "de"}}'
    )
    assert update == protocol.SessionUpdate({"language": "de"})


def test_query_parameters_are_converted_and_validated():
    options = protocol.options_from_query(
        {
            "sample_rate": "48000",
            "language": "auto",
            "silence_duration_ms": "700",
            "partials": "false",
        }
    )
    assert (options.sample_rate, options.language, options.silence_duration_ms) == (
        48000,
        None,
        700,
    )
    assert options.partials is False
    with pytest.raises(InvalidMessage) as caught:
        protocol.options_from_query({"sample_rate": "22050"})
    assert caught.value.code == "unsupported_sample_rate"


def test_events_carry_session_id_utterance_id_and_stream_ms():
    stopped = protocol.event_message("s1", UtteranceStopped(3, 16000, 48000, "silence"))
    assert stopped == {
        "type": "speech.stopped",
        "session_id": "s1",
        "utterance_id": 3,
        "start_ms": 1000,
        "end_ms": 3000,
        "reason": "silence",
    }
    final = protocol.event_message(
        "s1", FinalText(3, "Hi.", 16000, 48000, "silence", "en", "", "local", 12.34)
    )
    assert final["type"] == "transcript.final" and final["text"] == "Hi."
    assert (final["start_ms"], final["end_ms"], final["language"]) == (1000, 3000, "en")
