"""The websocket endpoint against a real uvicorn server with the scripted backend."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time

import httpx
import pytest
import websockets

from client.stream import stream_pcm
from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import TIMEOUT_S, fake_settings, run, running_server

SPEECH = pcm16(bursts(300, 1500, 1000, 1200, 800))


def fake_app(**overrides):
    settings = fake_settings(**overrides)
    return create_app(settings, ScriptedTranscriber(["first words here", "and second"]))


@pytest.fixture(scope="module")
def server():
    with running_server(fake_app(max_pending_events=50, send_timeout_s=2.0)) as running:
        yield running


async def collect_until_closed(websocket) -> list[dict]:
    events = []
    async for raw in websocket:
        events.append(json.loads(raw))
        if events[-1]["type"] == "session.closed":
            break
    return events


def test_health_and_readiness(server):
    assert httpx.get(server.http_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.http_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_streaming_gives_partials_then_one_final_per_utterance_before_closed(server):
    # Real-time pace (sped up): partial answers must come back before the final request.
    result = run(stream_pcm(server.ws_url, SPEECH, speed=4.0, chunk_ms=50))
    types = [event["type"] for event in result.events]
    assert types[0] == "session.created" and types[-1] == "session.closed"
    finals = result.finals
    assert [final["text"] for final in finals] == ["first words here", "and second"]
    assert [final["utterance_id"] for final in finals] == [1, 2]
    assert all(final["latency_ms"] >= 0 for final in finals)
    assert finals[0]["start_ms"] < finals[0]["end_ms"] <= finals[1]["start_ms"]
    assert finals[1]["prompt"] == "first words here"
    assert result.of_type("transcript.partial")
    session_ids = {event["session_id"] for event in result.events}
    assert len(session_ids) == 1


def test_session_update_as_first_message_and_48k_audio(server):
    async def scenario():
        async with websockets.connect(server.ws_url) as ws:
            await ws.recv()  # session.created
            await ws.send(json.dumps({"type": "session.update", "session": {"sample_rate": 48000}}))
            updated = json.loads(await ws.recv())
            assert updated["type"] == "session.updated"
            assert updated["session"]["sample_rate"] == 48000
            import numpy as np

            from tests.audio import bursts as make

            audio = np.repeat(make(300, 1500, 800), 3)  # 16 kHz signal held to 48 kHz
            await ws.send(pcm16(audio))
            await ws.send(json.dumps({"type": "session.close"}))
            return await collect_until_closed(ws)

    events = run(scenario())
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 1
    assert 1300 <= finals[0]["end_ms"] - finals[0]["start_ms"] <= 2300


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("sample_rate=22050", "unsupported_sample_rate"),
        ("model=nope", "model_not_found"),
        ("silence_duration_ms=-5", "invalid_session"),
        ("bogus=1", "invalid_session"),
    ],
)
def test_bad_query_parameters_get_an_error_and_a_policy_close(server, query, code):
    async def scenario():
        async with websockets.connect(f"{server.ws_url}?{query}") as ws:
            event = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return event, closed.value.rcvd

    event, close = run(scenario())
    assert event["type"] == "error" and event["code"] == code
    assert close.code == 1008 and close.reason


def test_bad_messages_get_error_events_and_the_session_goes_on(server):
    async def scenario():
        async with websockets.connect(server.ws_url) as ws:
            await ws.recv()
            await ws.send("this is not json")
            await ws.send(json.dumps({"type": "session.dance"}))
            await ws.send(b"\x01\x02\x03")  # odd byte count
            await ws.send(json.dumps({"type": "session.update", "session": {"vad_threshold": 7}}))
            await ws.send(os.urandom(4000))  # garbage, but whole samples: it is just noise
            await ws.send(SPEECH)
            await ws.send(json.dumps({"type": "session.close"}))
            return await collect_until_closed(ws)

    events = run(scenario())
    codes = [event["code"] for event in events if event["type"] == "error"]
    assert codes[:4] == ["invalid_json", "unknown_message_type", "invalid_audio", "invalid_session"]
    assert all(event["message"] for event in events if event["type"] == "error")
    assert any(e["type"] == "transcript.final" and e["text"] for e in events)
    assert events[-1]["type"] == "session.closed"


def test_audio_after_close_is_refused_while_finals_finish():
    app = create_app(
        fake_settings(),
        ScriptedTranscriber(["slow final"], delay_s=0.5),
    )
    with running_server(app) as slow:

        async def scenario():
            async with websockets.connect(slow.ws_url + "?partials=false") as ws:
                await ws.recv()
                await ws.send(SPEECH)
                await ws.send(json.dumps({"type": "session.close"}))
                await ws.send(b"\x00\x00" * 100)
                return await collect_until_closed(ws)

        events = run(scenario())
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0]["code"] == "session_closing"
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 2
    assert events[-1]["type"] == "session.closed"


def test_a_vanishing_client_leaves_other_sessions_alone(server, caplog):
    caplog.set_level(logging.INFO)

    async def vanish():
        ws = await websockets.connect(server.ws_url)
        await ws.recv()
        await ws.send(SPEECH[: len(SPEECH) // 3])  # mid-utterance
        ws.transport.abort()  # no close frame: the network just dropped

    async def scenario():
        vanishing = asyncio.create_task(vanish())
        healthy = await stream_pcm(server.ws_url, SPEECH, speed=None)
        await vanishing
        return healthy

    healthy = run(scenario())
    assert len(healthy.finals) == 2
    time.sleep(0.3)
    assert not [record for record in caplog.records if record.exc_info]


def raw_websocket(port: int, path: str = "/v1/stream") -> socket.socket:
    """A websocket client made by hand, with a tiny receive buffer, that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    length = len(payload)
    if length < 126:
        header += bytes([0x80 | length])
    else:
        header += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def test_a_client_that_never_reads_is_disconnected_without_slowing_others(server):
    sock = raw_websocket(server.port)
    update = json.dumps({"type": "session.update", "session": {"prompt": "x" * 1900}})
    frame = masked_text_frame(update)
    sock.settimeout(TIMEOUT_S)
    dropped = False

    def flood(count: int) -> bool:
        """Send updates, each answered with ~2 kB; True once the server has dropped us."""
        try:
            for _ in range(count):
                sock.sendall(frame)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return False

    dropped = flood(200)
    healthy = run(stream_pcm(server.ws_url, SPEECH, speed=None))
    assert len(healthy.finals) == 2
    deadline = time.monotonic() + TIMEOUT_S
    try:
        dropped = dropped or flood(5000)
        while not dropped and time.monotonic() < deadline:
            dropped = not sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        dropped = True
    finally:
        sock.close()
    assert dropped, "the server kept a connection that never reads"
