"""OpenAI's Realtime transcription protocol (``/v1/realtime``) driven by the official ``openai``
SDK, GA and beta, against a real server on the scripted backend: the event sequence, manual
commits, clear, partial updates, G.711, the idle timeout, errors in OpenAI's shape while the
session goes on, credentials (header, subprotocol, browser token) and admission."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import time

import httpx
import numpy as np
import openai
import pytest
import websockets

from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import pcm16, silence, tone
from tests.support import TIMEOUT_S, fake_settings, run, running_server, server_process

KEY = "sk-ss-realtime-0123456789"
SCRIPT = ["first words here", "and second"]
GA_SESSION = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        }
    },
}


def bursts(*pattern_ms: int, rate_hz: int = 24000) -> np.ndarray:
    """Silence, tone, silence, tone... at ``rate_hz``."""
    parts = [
        silence(ms, rate_hz=rate_hz) if index % 2 == 0 else tone(ms, rate_hz=rate_hz)
        for index, ms in enumerate(pattern_ms)
    ]
    return np.concatenate(parts)


TWO_UTTERANCES = pcm16(bursts(300, 2500, 1000, 1200, 1000))


@pytest.fixture(scope="module")
def server():
    settings = fake_settings(api_keys=[KEY])
    app = create_app(settings, ScriptedTranscriber(SCRIPT, words_per_second=4.0))
    with running_server(app) as running:
        yield running


def client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=KEY, websocket_base_url=f"ws://127.0.0.1:{server.port}/v1")


def connect(server):
    """A GA transcription session through the SDK."""
    return client(server).realtime.connect(extra_query={"intent": "transcription"})


async def configure(connection, audio_input: dict, **session):
    """``session.update`` with ``audio.input`` (and other session fields); the answer."""
    update = {"type": "transcription", "audio": {"input": audio_input}, **session}
    await connection.session.update(session=update)
    return await connection.recv()


async def append(connection, audio: bytes, *, chunk_bytes: int = 4800, pace_s: float = 0.0):
    for start in range(0, len(audio), chunk_bytes):
        piece = base64.b64encode(audio[start : start + chunk_bytes]).decode()
        await connection.input_audio_buffer.append(audio=piece)
        if pace_s:
            await asyncio.sleep(pace_s)  # pacing the sender like a microphone, not a sync


async def events_until(connection, done, *, limit: int = 500) -> list:
    """Server events until ``done(events)`` holds."""
    events: list = []
    while not done(events):
        events.append(await asyncio.wait_for(connection.recv(), TIMEOUT_S))
        assert len(events) < limit
    return events


def completed(count: int):
    kind = "conversation.item.input_audio_transcription.completed"
    return lambda events: sum(event.type == kind for event in events) >= count


def of(events, kind: str) -> list:
    return [event for event in events if event.type == kind]


def test_ga_sdk_session_gives_live_deltas_then_items_in_order(server):
    async def scenario():
        async with connect(server) as connection:
            created = await connection.recv()
            await connection.session.update(session=GA_SESSION)
            updated = await connection.recv()
            # 4x real time: partials still come while each utterance is spoken.
            await append(connection, TWO_UTTERANCES, pace_s=0.025)
            return created, updated, await events_until(connection, completed(2))

    created, updated, events = run(scenario())
    assert created.type == "session.created" and updated.type == "session.updated"
    assert created.session.id.startswith("sess_") and len(created.session.id) == 26
    assert updated.session.audio.input.transcription.language == "en"
    types = [event.type for event in events]
    started = of(events, "input_audio_buffer.speech_started")
    committed = of(events, "input_audio_buffer.committed")
    done = of(events, "conversation.item.input_audio_transcription.completed")
    items = [event.item_id for event in started]
    assert len(items) == 2 and all(item.startswith("item_") and len(item) == 26 for item in items)
    assert [event.item_id for event in committed] == items
    assert [event.previous_item_id for event in committed] == [None, items[0]]
    assert [event.item_id for event in done] == items
    assert all(event.transcript in SCRIPT for event in done)  # the script is the server's
    assert all(event.usage.type == "duration" and event.usage.seconds > 0 for event in done)
    # Tones at 300 ms and 3800 ms; audio_start_ms includes the 300 ms pre-roll.
    assert started[0].audio_start_ms == 0 and abs(started[1].audio_start_ms - 3500) <= 60
    for item, transcript in zip(items, [event.transcript for event in done], strict=True):
        deltas = [e for e in of(events, "conversation.item.input_audio_transcription.delta")]
        text = "".join(e.delta for e in deltas if e.item_id == item)
        assert text == transcript  # deltas only extend the text, and add up to it
        stopped = next(
            i
            for i, e in enumerate(events)
            if e.type == "input_audio_buffer.speech_stopped" and e.item_id == item
        )
        first_delta = next(i for i, e in enumerate(deltas) if e.item_id == item)
        assert events.index(deltas[first_delta]) < stopped  # live text while speaking
    for item in items:  # OpenAI's order for each item
        sequence = [
            e.type
            for e in events
            if getattr(e, "item_id", None) == item
            or getattr(getattr(e, "item", None), "id", 0) == item
        ]
        closing = [
            t for t in sequence if "delta" not in t and t != "input_audio_buffer.speech_started"
        ]
        assert closing == [
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.input_audio_transcription.completed",
        ]
    assert types.count("error") == 0


def test_beta_sdk_gets_beta_event_names(server):
    async def scenario():
        async with client(server).beta.realtime.connect(model="gpt-4o-transcribe") as connection:
            created = await connection.recv()
            await connection.transcription_session.update(
                session={
                    "input_audio_format": "pcm16",
                    "input_audio_transcription": {"model": "whisper-1", "prompt": "Cards."},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
                }
            )
            updated = await connection.recv()
            await append(connection, TWO_UTTERANCES)
            return created, updated, await events_until(connection, completed(2))

    created, updated, events = run(scenario())
    assert created.type == "transcription_session.created"
    assert updated.type == "transcription_session.updated"
    assert updated.session.input_audio_transcription.model == "whisper-1"
    assert updated.session.turn_detection.silence_duration_ms == 600
    created_items = of(events, "conversation.item.created")
    assert len(created_items) == 2 and created_items[1].previous_item_id == created_items[0].item.id
    assert not of(events, "conversation.item.added")
    assert [
        e.transcript for e in of(events, "conversation.item.input_audio_transcription.completed")
    ]


def test_manual_commits_give_one_item_per_commit_in_order_and_empty_commits_are_errors(server):
    async def scenario():
        async with client(server).realtime.connect(
            extra_query={"intent": "transcription", "model": "gpt-4o-transcribe"}
        ) as connection:
            await connection.recv()
            updated = await configure(connection, {"turn_detection": None})
            await connection.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
            empty = await connection.recv()
            events = []
            # Pauses longer than any silence window: with turn_detection null only commits end
            # items, so each commit is one item however many pauses it holds.
            for _ in range(2):
                await append(connection, pcm16(bursts(200, 800, 1500, 800, 300)))
                await connection.input_audio_buffer.commit()
                events += await events_until(connection, completed(1))
            return updated, empty, events

    updated, empty, events = run(scenario())
    assert updated.session.audio.input.turn_detection is None
    assert empty.type == "error" and empty.error.code == "input_audio_buffer_commit_empty"
    assert empty.error.event_id == "evt_empty"
    assert not of(events, "input_audio_buffer.speech_started")
    assert not of(events, "input_audio_buffer.speech_stopped")
    committed = of(events, "input_audio_buffer.committed")
    done = of(events, "conversation.item.input_audio_transcription.completed")
    assert [e.item_id for e in committed] == [e.item_id for e in done] and len(done) == 2
    assert committed[1].previous_item_id == committed[0].item_id


def test_clear_drops_the_utterance_in_progress_and_the_session_goes_on(server):
    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            await append(connection, pcm16(bursts(300, 1500)))  # still speaking
            speaking = await events_until(
                connection, lambda e: bool(of(e, "input_audio_buffer.speech_started"))
            )
            await connection.input_audio_buffer.clear()
            cleared = await events_until(
                connection, lambda e: bool(of(e, "input_audio_buffer.cleared"))
            )
            await append(connection, TWO_UTTERANCES)
            later = await events_until(connection, completed(2))
            return speaking[-1].item_id, cleared, later

    dropped, cleared, later = run(scenario())
    assert not of(cleared, "input_audio_buffer.committed")
    finished = of(later, "conversation.item.input_audio_transcription.completed")
    assert dropped not in [e.item_id for e in finished + of(later, "input_audio_buffer.committed")]


@pytest.mark.parametrize(
    ("audio_format", "beta_name"), [("audio/pcmu", "g711_ulaw"), ("audio/pcma", "g711_alaw")]
)
def test_g711_audio_is_decoded_at_8_khz(server, audio_format, beta_name):
    import av

    samples = bursts(300, 1500, 1000, rate_hz=8000)
    codec = av.CodecContext.create("pcm_mulaw" if beta_name == "g711_ulaw" else "pcm_alaw", "w")
    codec.sample_rate, codec.layout, codec.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(
        (samples * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    encoded = b"".join(bytes(packet) for packet in codec.encode(frame))

    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            updated = await configure(connection, {"format": {"type": audio_format}})
            await append(connection, encoded, chunk_bytes=800)
            return updated, await events_until(connection, completed(1))

    updated, events = run(scenario())
    assert updated.session.audio.input.format.type == audio_format
    stopped = of(events, "input_audio_buffer.speech_stopped")[0]
    started = of(events, "input_audio_buffer.speech_started")[0]
    # The tone lasted 1.5 s: G.711 read as 8 kHz, not as PCM16 at another rate.
    assert 1500 <= stopped.audio_end_ms - started.audio_start_ms - 300 <= 1900


def test_partial_updates_keep_what_they_do_not_name(server):
    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            await connection.session.update(session=GA_SESSION)
            await connection.recv()
            prompt_only = await configure(
                connection, {"transcription": {"prompt": "Names: Abbie."}}
            )
            semantic = await configure(
                connection,
                {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
                include=["item.input_audio_transcription.logprobs"],
            )
            return prompt_only, semantic

    prompt_only, semantic = run(scenario())
    audio_input = prompt_only.session.audio.input
    assert audio_input.transcription.language == "en" and audio_input.transcription.prompt
    assert audio_input.turn_detection.silence_duration_ms == 500
    assert semantic.session.audio.input.turn_detection.type == "semantic_vad"
    assert semantic.session.audio.input.transcription.prompt == "Names: Abbie."
    assert semantic.session.include == ["item.input_audio_transcription.logprobs"]


BAD_EVENTS = [
    ({"type": "no.such.event", "event_id": "evt_a"}, "invalid_value", "type"),
    ({"type": "response.create", "event_id": "evt_b"}, "invalid_value", "type"),
    (
        {"type": "input_audio_buffer.append", "event_id": "evt_c"},
        "missing_required_parameter",
        "audio",
    ),
    (
        {"type": "input_audio_buffer.append", "audio": "***", "event_id": "evt_d"},
        "invalid_value",
        "audio",
    ),
    (
        {"type": "session.update", "session": {"type": "realtime"}, "event_id": "evt_e"},
        "invalid_value",
        "session.type",
    ),
    (
        {
            "type": "session.update",
            "event_id": "evt_f",
            "session": {
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "nope"}}},
            },
        },
        "model_not_found",
        "session.audio.input.transcription.model",
    ),
    (
        {
            "type": "session.update",
            "event_id": "evt_g",
            "session": {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"silence_duration_ms": 1}}},
            },
        },
        "invalid_session",
        None,
    ),
]


def test_bad_events_get_openai_errors_and_the_session_goes_on(server):
    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            errors = []
            for event, _, _ in BAD_EVENTS:
                await connection.send(event)
                errors.append(await asyncio.wait_for(connection.recv(), TIMEOUT_S))
            await append(connection, TWO_UTTERANCES)
            return errors, await events_until(connection, completed(2))

    errors, events = run(scenario())
    for error, (event, code, param) in zip(errors, BAD_EVENTS, strict=True):
        assert error.type == "error", event
        assert error.event_id.startswith("event_")
        assert (error.error.code, error.error.param) == (code, param), event
        assert error.error.type == "invalid_request_error" and error.error.message
        assert error.error.event_id == event["event_id"]
    done = of(events, "conversation.item.input_audio_transcription.completed")
    assert len(done) == 2 and all(event.transcript in SCRIPT for event in done)


def test_json_that_is_not_an_event_and_binary_frames_are_errors_too(server):
    async def scenario():
        url = f"ws://127.0.0.1:{server.port}/v1/realtime?intent=transcription"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with websockets.connect(url, additional_headers=headers) as websocket:
            answers = [json.loads(await websocket.recv())]
            for message in ["{not json", "[1, 2]", b"\x00\x01"]:
                await websocket.send(message)
                answers.append(json.loads(await websocket.recv()))
            await websocket.send(json.dumps({"type": "input_audio_buffer.clear"}))
            answers.append(json.loads(await websocket.recv()))
            return answers

    created, *errors, cleared = run(scenario())
    assert created["type"] == "session.created"
    assert [error["error"]["code"] for error in errors] == [
        "invalid_json",
        "invalid_type",
        "invalid_value",
    ]
    assert cleared["type"] == "input_audio_buffer.cleared"


def test_idle_timeout_commits_the_silent_buffer(server):
    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            await configure(
                connection, {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}
            )
            await append(connection, pcm16(silence(5500, rate_hz=24000)))
            return await events_until(connection, completed(1))

    events = run(scenario())
    timeout = of(events, "input_audio_buffer.timeout_triggered")[0]
    assert timeout.audio_start_ms == 0 and timeout.audio_end_ms >= 5000
    done = of(events, "conversation.item.input_audio_transcription.completed")[0]
    assert done.item_id == timeout.item_id and done.transcript == ""


def test_credentials_by_header_subprotocol_and_browser_token(server):
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?intent=transcription"

    async def first_event(**options) -> tuple[dict, str | None, int | None]:
        async with websockets.connect(url, **options) as websocket:
            event = json.loads(await websocket.recv())
            subprotocol = websocket.subprotocol
            if event["type"] == "error":
                await websocket.wait_closed()
            return event, subprotocol, websocket.close_code

    refused, _, code = run(first_event())
    assert refused["error"]["code"] == "missing_api_key" and code == 1008
    by_header, _, _ = run(first_event(additional_headers={"Authorization": f"Bearer {KEY}"}))
    assert by_header["type"] == "session.created"
    # Browsers: the key (or a browser token) as a subprotocol; we choose "realtime".
    offered = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]
    by_subprotocol, chosen, _ = run(first_event(subprotocols=offered))
    assert by_subprotocol["type"] == "transcription_session.created" and chosen == "realtime"
    minted = httpx.post(
        f"{server.http_url}/v1/realtime/client_secrets",
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "session": {
                "type": "transcription",
                "audio": {"input": {"transcription": {"language": "de"}}},
            }
        },
    ).json()
    offered = ["realtime", f"openai-insecure-api-key.{minted['value']}"]
    by_token, _, _ = run(first_event(subprotocols=offered))
    assert by_token["session"]["audio"]["input"]["transcription"]["language"] == "de"

    async def pinned_update() -> dict:
        async with websockets.connect(url, subprotocols=offered) as websocket:
            await websocket.recv()
            session = {
                "type": "transcription",
                "audio": {"input": {"transcription": {"language": "fr"}}},
            }
            await websocket.send(json.dumps({"type": "session.update", "session": session}))
            return json.loads(await websocket.recv())

    assert run(pinned_update())["error"]["code"] == "invalid_session"


def test_conversation_intents_and_unknown_models_are_refused(server):
    async def refusal(query: str) -> tuple[dict, int | None]:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime?{query}"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with websockets.connect(url, additional_headers=headers) as websocket:
            event = json.loads(await websocket.recv())
            await websocket.wait_closed()
            return event, websocket.close_code

    assert run(refusal("intent=conversation"))[0]["error"]["param"] == "intent"
    event, code = run(refusal("intent=transcription&model=nope"))
    assert event["error"]["code"] == "model_not_found" and code == 1008


def test_a_full_server_refuses_with_1013():
    app = create_app(fake_settings(max_sessions=1), ScriptedTranscriber(SCRIPT))
    with running_server(app) as running:
        url = f"ws://127.0.0.1:{running.port}/v1/realtime?intent=transcription"

        async def scenario():
            async with websockets.connect(url) as first:
                await first.recv()
                async with websockets.connect(url) as second:
                    refused = json.loads(await second.recv())
                    await second.wait_closed()
                    return refused, second.close_code

        refused, code = run(scenario())
    assert refused["type"] == "error" and refused["error"]["code"] == "too_many_sessions"
    assert code == 1013


def test_shutdown_drains_with_the_finals_then_1012_and_logs_keep_no_secret():
    key = "sk-ss-realtime-drain-0123456789"
    process, port = server_process(
        "--backend",
        "fake",
        "--shutdown-grace-s",
        "5",
        "--log-level",
        "debug",
        env={
            "STREAMSCRIBE_FAKE_SCRIPT": '["spoken before shutdown"]',
            "STREAMSCRIBE_API_KEYS": key,
        },
    )
    url = f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription"

    async def scenario():
        offered = ["realtime", f"openai-insecure-api-key.{key}"]
        async with websockets.connect(url, subprotocols=offered) as websocket:
            await websocket.recv()
            audio = base64.b64encode(pcm16(bursts(300, 1500))).decode()  # mid-utterance
            await websocket.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            while json.loads(await websocket.recv())["type"] != "input_audio_buffer.speech_started":
                pass
            process.send_signal(signal.SIGTERM)
            events = []
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    events.append(json.loads(await websocket.recv()))
            return events, websocket.close_code

    started = time.monotonic()
    events, code = run(scenario())
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert time.monotonic() - started < 10
    assert events[-1]["type"] == "conversation.item.input_audio_transcription.completed"
    assert events[-1]["transcript"] == "spoken before shutdown"
    assert code == 1012
    assert "/v1/realtime" in stderr  # the log is there, and it holds no key and no text
    assert key not in stderr and "spoken before shutdown" not in stderr


def test_one_append_may_hold_megabytes_as_with_openai(server):
    # 40 s of audio in one event: over max_message_bytes (1 MiB), under OpenAI's 15 MiB.
    audio = pcm16(bursts(300, 1500, 1000, rate_hz=24000)) + pcm16(silence(37_200, rate_hz=24000))
    assert len(audio) > 1024 * 1024

    async def scenario():
        async with connect(server) as connection:
            await connection.recv()
            await append(connection, audio, chunk_bytes=len(audio))
            return await events_until(connection, completed(1))

    events = run(scenario())
    assert not of(events, "error") and of(events, "input_audio_buffer.committed")
