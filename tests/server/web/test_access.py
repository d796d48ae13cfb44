"""API keys, tokens, origins and limits against a real server on loopback, over HTTP and
websocket, with the scripted backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
import websockets

from client.stream import stream_pcm, with_query
from server.backends.fake import ScriptedTranscriber
from server.policy.auth import key_line
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import TIMEOUT_S, fake_settings, run, running_server

KEY = "sk-ss-alpha-0123456789"
FILE_KEY = "sk-ss-file-9876543210"
FAST_KEY = "sk-ss-fast-5555555555"
SPEECH = pcm16(bursts(300, 1200, 900))


def app_with(tmp_path: Path | None = None, **overrides):
    if tmp_path is not None:
        key_file = tmp_path / "keys"
        key_file.write_text(
            "# operators' keys\n"
            f"{key_line(FILE_KEY, 'alice')} max_sessions=1\n"
            f"{key_line(FAST_KEY, 'loader')} fast\n"
        )
        overrides["api_key_file"] = key_file
    settings = fake_settings(api_keys=[KEY], **overrides)
    return create_app(settings, ScriptedTranscriber(["hello world"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = app_with(tmp_path_factory.mktemp("keys"), allowed_origins=["https://captions.example"])
    with running_server(app) as running:
        yield running


async def open_events(url: str, headers: dict | None = None, limit: int = 10) -> tuple[list, int]:
    """Connect, read until the server closes; the events and the close code."""
    events = []
    async with websockets.connect(url, additional_headers=headers or {}) as websocket:
        with contextlib.suppress(websockets.ConnectionClosed):
            while len(events) < limit:
                events.append(json.loads(await websocket.recv()))
            return events, None  # still open
        await asyncio.wait_for(websocket.wait_closed(), TIMEOUT_S)
        return events, websocket.close_code


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "You didn't provide an API key"), (bearer("sk-wrong"), "Incorrect API key")],
)
def test_http_without_a_valid_key_is_401_in_openais_shape(server, headers, message):
    for path in ("/v1/models", "/stats", "/metrics"):
        response = httpx.get(server.http_url + path, headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert message in error["message"] and error["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.http_url + "/healthz").status_code == 200  # probes stay open


def test_the_openai_sdk_raises_authentication_error(server):
    client = openai.OpenAI(base_url=server.http_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        client.models.list()
    good = openai.OpenAI(base_url=server.http_url + "/v1", api_key=KEY, max_retries=0)
    assert "whisper-1" in [model.id for model in good.models.list()]


def test_hashed_keys_from_the_file_work(server):
    assert httpx.get(server.http_url + "/v1/models", headers=bearer(FILE_KEY)).status_code == 200


def test_cors_preflight_for_an_allowed_origin_only(server):
    def preflight(origin):
        return httpx.options(
            server.http_url + "/v1/audio/transcriptions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    allowed = preflight("https://captions.example")
    assert allowed.headers["access-control-allow-origin"] == "https://captions.example"
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers


# ---------------------------------------------------------------------- websocket


def test_websocket_with_a_bearer_header_streams(server):
    async def session():
        async with websockets.connect(server.ws_url, additional_headers=bearer(KEY)) as ws:
            await ws.send(SPEECH)
            await ws.send(json.dumps({"type": "session.close"}))
            return [json.loads(raw) async for raw in ws]

    events = run(session())
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == ["hello world"]


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ({}, None, "missing_api_key"),
        ({}, bearer("sk-wrong"), "invalid_api_key"),
        ({"token": "sst_forged.AAAA"}, None, "invalid_api_key"),
        ({}, {**bearer(KEY), "Origin": "https://evil.example"}, "origin_not_allowed"),
    ],
)
def test_websocket_refusals_come_before_any_audio(server, query, headers, code):
    events, close_code = run(open_events(with_query(server.ws_url, query), headers))
    assert [event["type"] for event in events] == ["error"]
    assert events[0]["code"] == code and close_code == 1008


def test_a_browser_token_from_client_secrets_opens_a_websocket(server):
    response = httpx.post(
        server.http_url + "/v1/realtime/client_secrets",
        headers=bearer(KEY),
        json={"expires_after": {"anchor": "created_at", "seconds": 60}},
    )
    secret = response.json()
    assert response.status_code == 200 and secret["value"].startswith("sst_")
    assert 50 <= secret["expires_at"] - time.time() <= 61
    assert KEY not in secret["value"]
    url = with_query(server.ws_url, {"token": secret["value"]})
    result = run(stream_pcm(url, SPEECH, speed=None, options={}))
    assert [final["text"] for final in result.finals] == ["hello world"]
    # Allowed origin, as a browser would send it.
    events, _ = run(open_events(url, {"Origin": "https://captions.example"}, limit=1))
    assert events[0]["type"] == "session.created"


def test_client_secrets_needs_a_key_and_a_sane_lifetime(server):
    url = server.http_url + "/v1/realtime/client_secrets"
    assert httpx.post(url).status_code == 401
    bad = httpx.post(url, headers=bearer(KEY), json={"expires_after": {"seconds": 10**6}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_after.seconds"


def test_an_expired_token_is_refused():
    app = app_with()
    token = app.state.context.authenticator.signer.issue("key", int(time.time()) - 1)
    with running_server(app) as server:
        events, close_code = run(open_events(with_query(server.ws_url, {"token": token})))
    assert events[0]["code"] == "token_expired" and close_code == 1008


# ---------------------------------------------------------------------- limits


def test_per_key_session_limit_names_the_limit_and_counts_are_released(server):
    async def scenario():
        first = await websockets.connect(server.ws_url, additional_headers=bearer(FILE_KEY))
        assert json.loads(await first.recv())["type"] == "session.created"
        events, close_code = await open_events(server.ws_url, bearer(FILE_KEY))
        await first.close()
        await asyncio.sleep(0.2)
        again, _ = await open_events(server.ws_url, bearer(FILE_KEY), limit=1)
        return events, close_code, again

    events, close_code, again = run(scenario())
    assert events[0]["code"] == "too_many_sessions" and close_code == 1013
    assert "max_sessions_per_key (1)" in events[0]["message"]
    assert again[0]["type"] == "session.created"


def test_total_session_limit():
    with running_server(app_with(max_sessions=1)) as server:

        async def scenario():
            async with websockets.connect(server.ws_url, additional_headers=bearer(KEY)) as ws:
                await ws.recv()
                return await open_events(server.ws_url, bearer(KEY))

        events, close_code = run(scenario())
    assert "max_sessions (1)" in events[0]["message"] and close_code == 1013


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on():
    with running_server(app_with(max_message_bytes=4000)) as server:

        async def scenario():
            async with websockets.connect(server.ws_url, additional_headers=bearer(KEY)) as ws:
                await ws.recv()
                await ws.send(b"\x00" * 8000)
                error = json.loads(await ws.recv())
                for offset in range(0, len(SPEECH), 3200):
                    await ws.send(SPEECH[offset : offset + 3200])
                await ws.send(json.dumps({"type": "session.close"}))
                return error, [json.loads(raw) async for raw in ws]

        error, events = run(scenario())
    assert error["code"] == "message_too_large" and "max_message_bytes (4000)" in error["message"]
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == ["hello world"]
    # The refused message has its number too: the client counted it, and a resume must not
    # send audio twice.
    binary_messages = 1 + len(range(0, len(SPEECH), 3200))
    acks = [e["seq"] for e in events if e["type"] == "input_audio.ack"]
    assert acks[-1] == binary_messages


def test_audio_faster_than_the_rate_limit_is_refused_unless_the_key_is_fast(tmp_path):
    audio = pcm16(bursts(300, 4000, 900))  # 5.2 s sent at once, 1 s burst allowed
    app = app_with(tmp_path, max_audio_speed=1.5)
    app.state.context.limits = type(app.state.context.limits)(
        max_audio_speed=1.5, audio_burst_s=1.0
    )
    with running_server(app) as server:

        async def send_fast(key):
            events = []
            async with websockets.connect(server.ws_url, additional_headers=bearer(key)) as ws:
                with contextlib.suppress(websockets.ConnectionClosed):
                    for offset in range(0, len(audio), 3200):
                        await ws.send(audio[offset : offset + 3200])
                    await ws.send(json.dumps({"type": "session.close"}))
                    async for raw in ws:
                        events.append(json.loads(raw))
                return events, ws.close_code

        limited, limited_close = run(send_fast(KEY))
        fast, fast_close = run(send_fast(FAST_KEY))
    errors = [e for e in limited if e["type"] == "error"]
    assert errors[0]["code"] == "audio_rate_exceeded" and "max_audio_speed" in errors[0]["message"]
    assert limited_close == 1008
    assert fast_close == 1000 and any(e["type"] == "transcript.final" for e in fast)


def test_idle_sessions_are_closed_with_their_finals():
    with running_server(app_with(idle_timeout_s=0.5)) as server:

        async def scenario():
            async with websockets.connect(server.ws_url, additional_headers=bearer(KEY)) as ws:
                await ws.send(SPEECH[: len(SPEECH) * 2 // 3])  # mid-utterance, then silence
                return [json.loads(raw) async for raw in ws], ws.close_code

        events, close_code = run(scenario())
    types = [event["type"] for event in events]
    assert "transcript.final" in types and types[-1] == "session.closed"
    assert events[-1]["reason"] == "idle_timeout" and close_code == 1000
    assert any(e["type"] == "error" and "idle_timeout_s" in e["message"] for e in events)


def test_session_length_limit_ends_the_session_with_its_finals():
    with running_server(app_with(max_session_s=1.0, idle_timeout_s=0)) as server:

        async def scenario():
            events = []

            async def read(ws):
                async for raw in ws:
                    events.append(json.loads(raw))

            async with websockets.connect(server.ws_url, additional_headers=bearer(KEY)) as ws:
                reader = asyncio.create_task(read(ws))
                with contextlib.suppress(websockets.ConnectionClosed):
                    for offset in range(0, len(SPEECH) * 3, 3200):  # longer than the limit
                        await ws.send((SPEECH * 3)[offset : offset + 3200])
                        await asyncio.sleep(0.05)
                await reader
            return events

        events = run(scenario())
    assert events[-1] == {**events[-1], "type": "session.closed", "reason": "session_too_long"}
    assert any(e.get("code") == "session_too_long" for e in events)


def test_upload_size_limit_is_413_naming_the_limit():
    with running_server(app_with(max_upload_bytes=2048)) as server:
        response = httpx.post(
            server.http_url + "/v1/audio/transcriptions",
            headers=bearer(KEY),
            files={"file": ("a.wav", b"\x00" * 10_000)},
            data={"model": "whisper-1"},
        )
    assert response.status_code == 413
    assert "max_upload_bytes" in response.json()["error"]["message"]
