"""Running it for real: metrics after a streaming run, JSON logs, the draining shutdown on
SIGTERM of a real server process, and the key tooling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from client.stream import stream_pcm
from server.backends.fake import ScriptedTranscriber
from server.core.errors import Unauthorized, UsageError
from server.policy.auth import KeyStore, TokenSigner, key_line, parse_key_file
from server.web.app import create_app
from tests.audio import bursts, pcm16, wav_bytes
from tests.support import (
    ROOT,
    TIMEOUT_S,
    fake_settings,
    require_model,
    run,
    running_server,
    server_process,
)

SPEECH = pcm16(bursts(300, 1500, 900, 1200, 900))


def samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_match_what_the_client_saw():
    settings = fake_settings()
    app = create_app(settings, ScriptedTranscriber(["one two three", "four five"]))
    with running_server(app) as server:
        result = run(stream_pcm(server.ws_url, SPEECH, speed=4.0))
        bad = httpx.post(server.http_url + "/v1/audio/transcriptions", data={"model": "x"})
        found = samples(httpx.get(server.http_url + "/metrics").text)
    finals, partials = result.finals, result.of_type("transcript.partial")
    assert finals and partials and bad.status_code == 400
    assert value(found, "streamscribe_finals_total", backend="fake") == len(finals)
    assert value(found, "streamscribe_partials_total") == len(partials)
    latency_count = value(found, "streamscribe_final_latency_seconds_count", backend="fake")
    assert latency_count == len(finals)
    latency_sum = value(found, "streamscribe_final_latency_seconds_sum", backend="fake")
    assert latency_sum == pytest.approx(sum(f["latency_ms"] for f in finals) / 1000, abs=0.05)
    first = value(found, "streamscribe_first_partial_latency_seconds_count", backend="fake")
    assert first == len({p["utterance_id"] for p in partials})
    assert value(found, "streamscribe_audio_seconds_total") == pytest.approx(len(SPEECH) / 32_000)
    assert value(found, "streamscribe_sessions_total") == 1
    assert value(found, "streamscribe_active_sessions") == 0
    assert value(found, "streamscribe_inference_seconds_count", backend="fake", kind="final") >= 2
    assert value(found, "streamscribe_real_time_factor") > 0
    assert value(found, "streamscribe_errors_total", code="invalid_request_error") == 1
    assert (
        value(
            found,
            "streamscribe_http_requests_total",
            route="/v1/audio/transcriptions",
            status="400",
        )
        == 1
    )


def start_server(*flags: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    return server_process("--backend", "fake", *flags, env=env)


def test_sigterm_drains_sessions_mid_utterance_then_exits_with_json_logs():
    key = "sk-ss-shutdown-test-key"
    process, port = start_server(
        "--log-format",
        "json",
        "--shutdown-grace-s",
        "5",
        env={
            "STREAMSCRIBE_API_KEYS": key,
            "STREAMSCRIBE_FAKE_SCRIPT": '["spoken before shutdown"]',
        },
    )
    url = f"ws://127.0.0.1:{port}/v1/stream"
    mid_utterance = pcm16(bursts(300, 1500))  # speech still going when the server stops

    async def session() -> list[dict]:
        headers = {"Authorization": f"Bearer {key}"}
        async with websockets.connect(url, additional_headers=headers) as websocket:
            await websocket.send(mid_utterance)
            return [json.loads(raw) async for raw in websocket]

    async def scenario() -> list[list[dict]]:
        tasks = [asyncio.create_task(session()) for _ in range(2)]
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        return await asyncio.gather(*tasks)

    started = time.monotonic()
    outcomes = run(scenario())
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    # uvicorn re-raises the signal once shut down, so the exit status says "ended by SIGTERM".
    assert process.returncode in (0, -signal.SIGTERM) and time.monotonic() - started < 10
    for events in outcomes:
        types = [event["type"] for event in events]
        assert types[-2:] == ["transcript.final", "session.closed"], types
        assert events[-2]["text"] == "spoken before shutdown"
        assert events[-1]["reason"] == "server_shutdown"
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line.get("session_id", "").startswith("sess_") for line in lines)
    assert any("draining 2 session" in line["message"] for line in lines)
    assert key not in stderr and "spoken before shutdown" not in stderr


@pytest.mark.parametrize("flags", [(), ("--log-level", "debug", "--log-format", "json")])
def test_no_credential_prompt_or_transcript_reaches_the_output(flags):
    """Every credential in every place a client may put it, prompts everywhere they go, and
    finals with text: none of it appears in the server's output, at any log level."""
    key = "sk-ss-logtest-KEYSECRET"
    secrets = {
        "key": key,
        "wrong key": "sk-ss-wrong-WRONGSECRET",
        "query prompt": "QUERYPROMPTSECRET",
        "update prompt": "UPDATEPROMPTSECRET",
        "rest prompt": "RESTPROMPTSECRET",
        "token prompt": "TOKENPROMPTSECRET",
        "transcript": "TRANSCRIPTSECRET",
    }
    process, port = start_server(
        *flags,
        env={
            "STREAMSCRIBE_API_KEYS": key,
            "STREAMSCRIBE_FAKE_SCRIPT": json.dumps([f"{secrets['transcript']} said"]),
        },
    )
    http = f"http://127.0.0.1:{port}"
    try:
        secrets.update(run(use_every_credential(http, key, secrets)))
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    output = stdout + stderr
    assert "[redacted]" in output  # the lines are there, their values are not
    leaked = {name for name, secret in secrets.items() if secret in output}
    assert not leaked, f"{leaked} in the server's output"


async def use_every_credential(http: str, key: str, secrets: dict[str, str]) -> dict[str, str]:
    """Use the server as clients do; returns the credentials it handed out."""
    ws = http.replace("http://", "ws://")
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=http) as client:
        await client.get("/v1/models", headers=auth)
        await client.get(f"/v1/models?api_key={key}")  # a key in the query: refused, not logged
        await client.get("/v1/models", headers={"Authorization": f"Bearer {secrets['wrong key']}"})
        await client.post(
            "/v1/audio/transcriptions",
            headers=auth,
            files={"file": ("a.wav", wav_bytes(SPEECH))},
            data={"model": "whisper-1", "prompt": secrets["rest prompt"]},
        )
        pinning = await client.post(
            "/v1/realtime/client_secrets",
            headers=auth,
            json={
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"prompt": secrets["token prompt"]}}},
                }
            },
        )
        minted = await client.post("/v1/realtime/client_secrets", headers=auth)
    pinned_token, token = pinning.json()["value"], minted.json()["value"]
    async with websockets.connect(f"{ws}/v1/stream?{urlencode({'token': pinned_token})}") as pinned:
        await pinned.recv()
    query = urlencode({"token": token, "prompt": secrets["query prompt"]})
    async with websockets.connect(f"{ws}/v1/stream?{query}") as websocket:
        created = json.loads(await websocket.recv())
        update = {"type": "session.update", "session": {"prompt": secrets["update prompt"]}}
        await websocket.send(json.dumps(update))
        await websocket.recv()  # session.updated
        websocket.transport.abort()  # a dropped connection: the session waits for a resume
    session_id = created["session_id"]
    watch = urlencode({"watch_token": created["watch_token"]})
    with contextlib.suppress(websockets.InvalidStatus, websockets.ConnectionClosed):
        async with websockets.connect(f"{ws}/v1/watch/{session_id}?{watch}") as viewer:
            await viewer.recv()
    resume = urlencode(
        {"session_id": session_id, "resume_token": created["resume_token"], "last_final_id": 0}
    )
    async with websockets.connect(f"{ws}/v1/stream?{resume}&token={key}") as websocket:
        await websocket.recv()
        await websocket.send(SPEECH)
        await websocket.send(json.dumps({"type": "session.close"}))
        async for _ in websocket:
            pass
    return {
        "browser token": token,
        "pinning token": pinned_token,
        "resume token": created["resume_token"],
        "watch token": created["watch_token"],
    }


def test_hash_key_prints_a_line_the_key_file_accepts(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "streamscribe", "hash-key", "--name", "ops"],
        input="sk-ss-secret\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=TIMEOUT_S,
    )
    assert completed.returncode == 0 and "sk-ss-secret" not in completed.stdout
    key_file = tmp_path / "keys"
    key_file.write_text(completed.stdout)
    store = KeyStore.build(key_file=key_file)
    assert store.lookup("sk-ss-secret").key_id == "ops" and store.lookup("other") is None


def test_key_file_errors_name_the_line(tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text(f"{key_line('a')}\nsha256:nothex\n")
    with pytest.raises(UsageError, match=r"keys:2"):
        parse_key_file(key_file)
    with pytest.raises(UsageError, match="cannot read"):
        parse_key_file(tmp_path / "missing")


def test_tokens_cannot_be_forged_or_reused_after_expiry():
    signer = TokenSigner(b"secret")
    token = signer.issue("alice", expires_at=1000)
    assert signer.verify(token, now=999).key_id == "alice"
    with pytest.raises(Unauthorized, match="expired"):
        signer.verify(token, now=1000)
    payload, _, signature = token.partition(".")
    forged = payload.replace(payload[-3:], "AAA") + "." + signature
    for bad in (forged, token + "x", "sst_", "sst_....", TokenSigner(b"other").issue("a", 2000)):
        with pytest.raises(Unauthorized):
            signer.verify(bad, now=0)


@pytest.mark.model
def test_serve_says_once_ready_where_the_page_is_and_what_runs():
    require_model("tiny.en")
    process, port = server_process("--model", "tiny.en", "--compute-type", "int8")
    process.terminate()
    stdout, _ = process.communicate(timeout=TIMEOUT_S)
    # CTranslate2 names the type it runs: int8 weights compute in float32 on a CPU.
    assert f"StreamScribe is ready at http://127.0.0.1:{port}/ (tiny.en on cpu, int8" in stdout
