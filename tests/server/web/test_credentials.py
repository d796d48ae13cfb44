"""Browser tokens stay browser tokens: they open the streaming websockets only, cannot mint
another token, and pin the session they were made for. Garbled credentials get clear refusals."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import openai
import pytest

from client.stream import with_query
from server.backends.fake import ScriptedTranscriber
from server.policy.auth import key_line
from server.web.app import create_app
from tests.server.web.test_access import bearer, open_events
from tests.support import fake_settings, run, running_server

KEY = "sk-ss-credentials-0123456789"
RELAY_KEY = "sk-ss-relay-0123456789"
SCRIPT = ["one two three four five six"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "keys"
    key_file.write_text(f"{key_line(RELAY_KEY, 'front')} relay\n")
    settings = fake_settings(api_keys=[KEY], api_key_file=key_file)
    with running_server(create_app(settings, ScriptedTranscriber(SCRIPT))) as running:
        yield running


def mint(server, **body) -> dict:
    response = httpx.post(
        server.http_url + "/v1/realtime/client_secrets", headers=bearer(KEY), json=body
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_token_opens_no_rest_route_and_mints_no_token(server):
    token = mint(server)["value"]
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("POST", "/v1/realtime/client_secrets"),
        ("POST", "/v1/audio/transcriptions"),
    ]:
        response = httpx.request(method, server.http_url + path, headers=bearer(token))
        assert response.status_code == 401, path
        error = response.json()["error"]
        assert error["code"] == "token_not_allowed" and "websockets only" in error["message"]
    # It still opens the streaming websocket it was made for.
    events, _ = run(open_events(with_query(server.ws_url, {"token": token}), limit=1))
    assert events[0]["type"] == "session.created"


def test_client_secrets_answer_in_openais_shape_through_the_sdk(server):
    client = openai.OpenAI(base_url=server.http_url + "/v1", api_key=KEY)
    secret = client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "de", "prompt": "Glossar"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                }
            },
        },
    )
    assert secret.value.startswith("sst_") and secret.expires_at > 0
    session = secret.session
    assert session.type == "transcription" and session.id.startswith("sess_")
    assert session.audio.input.transcription.language == "de"
    assert session.audio.input.turn_detection.silence_duration_ms == 700


def test_a_token_pins_the_session_it_was_made_for(server):
    pinned = {"transcription": {"language": "de"}, "format": {"type": "audio/pcm", "rate": 24000}}
    token = mint(server, session={"type": "transcription", "audio": {"input": pinned}})["value"]
    url = with_query(server.ws_url, {"token": token})
    events, _ = run(open_events(url, limit=1))
    created = events[0]["session"]
    assert created["language"] == "de" and created["sample_rate"] == 24000
    # Asking for other values of pinned options is refused, at connect and by session.update.
    events, close_code = run(open_events(with_query(url, {"language": "en"})))
    assert events[0]["code"] == "invalid_session" and close_code == 1008
    assert "fixed by the token" in events[0]["message"]
    assert run(update_language(url, "en"))["code"] == "invalid_session"
    assert run(update_language(url, "de"))["type"] == "session.updated"  # the same value is fine


async def update_language(url: str, language: str) -> dict:
    import websockets

    async with websockets.connect(url) as websocket:
        await websocket.recv()  # session.created
        await websocket.send(
            json.dumps({"type": "session.update", "session": {"language": language}})
        )
        return json.loads(await websocket.recv())


def test_client_secrets_refuses_sessions_it_cannot_serve(server):
    url = server.http_url + "/v1/realtime/client_secrets"
    for session, param in [
        ({"type": "realtime"}, "session"),
        (
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            "session",
        ),
        (
            {"type": "transcription", "audio": {"input": {"transcription": {"model": "nope"}}}},
            "session.audio.input.transcription.model",
        ),
    ]:
        response = httpx.post(url, headers=bearer(KEY), json={"session": session})
        assert response.status_code == 400, session
        assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "credential",
    ["sst_\u00e9t\u00e9.\u00fc", "sst_not-base64!.x", "sst_" + "A" * 5000, "sk-\u00fcnicode"],
)
def test_garbled_or_non_ascii_credentials_are_clear_refusals(server, credential):
    events, close_code = run(open_events(with_query(server.ws_url, {"token": credential})))
    assert events[0]["type"] == "error" and close_code == 1008
    assert events[0]["code"] in {"invalid_api_key", "unauthorized"}
    header = f"Bearer {credential}".encode()
    response = httpx.get(server.http_url + "/v1/models", headers={"Authorization": header})
    assert response.status_code == 401 and response.json()["error"]["type"]


def test_non_ascii_resume_and_watch_tokens_are_refused_not_crashed(server):
    events, _ = run(open_events(server.ws_url, bearer(KEY), limit=1))
    session_id = events[0]["session_id"]
    resume = with_query(
        server.ws_url,
        {"session_id": session_id, "resume_token": "r\u00e9sum\u00e9", "last_final_id": 0},
    )
    events, close_code = run(open_events(resume, bearer(KEY)))
    assert events[0]["code"] == "resume_failed" and close_code == 1008
    watch = server.ws_url.replace("/v1/stream", f"/v1/watch/{session_id}")
    garbled = quote("w\u00e4tch")
    events, close_code = run(open_events(f"{watch}?watch_token={garbled}"))
    assert events[0]["code"] == "watch_failed" and close_code == 1008


@pytest.mark.parametrize(("key", "expected"), [(RELAY_KEY, "one two"), (KEY, SCRIPT[0])])
def test_only_relay_keys_may_queue_requests_as_partials(server, key, expected):
    from tests.audio import bursts, pcm16, wav_bytes

    response = httpx.post(
        server.http_url + "/v1/audio/transcriptions",
        headers={**bearer(key), "X-StreamScribe-Priority": "partial"},
        files={"file": ("a.wav", wav_bytes(pcm16(bursts(0, 1000))))},
        data={"model": "whisper-1", "response_format": "text"},
    )
    # A partial (greedy, after finals) gets the fake's leading words; anyone else a final.
    assert response.status_code == 200 and response.text.strip() == expected
