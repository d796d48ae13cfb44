"""Streaming sessions on the remote backend, end to end over loopback: a StreamScribe server
whose remote is the fault-injecting server, with and without a local fallback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter

import httpx
import pytest
import websockets
from openai import OpenAI

from client.stream import stream_pcm, with_query
from server.backends import failover
from server.backends.fake import ScriptedTranscriber
from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import bursts, pcm16, wav_bytes
from tests.server.backends.test_remote_backend import SECRET
from tests.support import ROOT, TIMEOUT_S, fake_settings, run, running_server

FOUR_UTTERANCES = pcm16(bursts(300, 1000, 900, 1000, 900, 1000, 900, 1000, 900))


def front_server(remote_url: str, *, fallback: bool, **overrides):
    settings = ServerSettings(
        backend="remote",
        remote_url=remote_url,
        remote_api_key=SECRET,
        remote_model=overrides.pop("remote_model", "whisper-1"),
        remote_max_retries=overrides.pop("remote_max_retries", 1),
        remote_timeout_s=2.0,
        breaker_cooldown_s=0.5,
        **overrides,
    )
    local = ScriptedTranscriber(["local one", "local two", "local three", "local four"])
    transcriber = failover.build(settings, local=local if fallback else None)
    return running_server(create_app(settings, transcriber))


def one_outcome_per_utterance(events: list[dict]) -> Counter:
    """Every utterance that started has exactly one final or one error."""
    started = {event["utterance_id"] for event in events if event["type"] == "speech.started"}
    outcomes = Counter(
        event["utterance_id"]
        for event in events
        if event["type"] == "transcript.final"
        or (event["type"] == "error" and event.get("utterance_id"))
    )
    assert set(outcomes) == started and all(count == 1 for count in outcomes.values())
    return outcomes


def test_faults_with_a_local_fallback_still_give_every_utterance_one_final(fresh):
    fresh.set_schedule(["429:0.1", "500", "500", "500", "garbage", "slow:3", "503", "401"])
    with front_server(fresh.url, fallback=True) as front:
        result = run(stream_pcm(front.ws_url, FOUR_UTTERANCES, speed=4.0))
        stats = httpx.get(front.http_url + "/stats").json()
    one_outcome_per_utterance(result.events)
    finals = result.finals
    assert len(finals) == 4 and not result.of_type("error")
    assert {final["backend"] for final in finals} <= {"remote", "fake"}
    assert any(final["backend"] == "fake" and final["failover_reason"] for final in finals)
    assert all(final["usage"]["audio_seconds"] > 0.5 for final in finals)
    assert stats["failovers"] >= 1 and stats["usage"]["fake"]["requests"] >= 1
    assert SECRET not in json.dumps(result.events)


def test_without_a_fallback_a_failed_utterance_gets_an_error_and_can_be_retried(fresh):
    fresh.set_schedule([], default="500")

    async def session(url: str) -> list[dict]:
        events: list[dict] = []
        async with websockets.connect(with_query(url, {"partials": "false"})) as websocket:
            await websocket.send(FOUR_UTTERANCES[: len(FOUR_UTTERANCES) // 2])
            await websocket.send(json.dumps({"type": "input_audio.commit"}))
            failed: list[int] = []
            while len(failed) < 2:
                events.append(json.loads(await websocket.recv()))
                if events[-1]["type"] == "error":
                    failed.append(events[-1]["utterance_id"])
            fresh.set_schedule([])  # the remote recovers
            for utterance_id in failed:
                await websocket.send(
                    json.dumps({"type": "utterance.retry", "utterance_id": utterance_id})
                )
            await websocket.send(json.dumps({"type": "session.close"}))
            async for raw in websocket:
                events.append(json.loads(raw))
        return events

    with front_server(fresh.url, fallback=False, remote_max_retries=0) as front:
        events = run(session(front.ws_url))
    errors = [event for event in events if event["type"] == "error"]
    assert [error["code"] for error in errors] == ["transcription_failed"] * 2
    finals = [event for event in events if event["type"] == "transcript.final"]
    assert sorted(final["utterance_id"] for final in finals) == [1, 2]
    assert all(final["retried"] and final["backend"] == "remote" for final in finals)
    # The wait of a retried final includes the failure and the client's retry: no latency is
    # claimed for it, and the load monitor never hears of it.
    assert all("latency_ms" not in final for final in finals)
    assert events[-1]["type"] == "session.closed"


def test_partials_stream_from_a_gpt_4o_remote_when_the_session_asks(fresh):
    fresh.text = "streamed remote words"
    try:
        with front_server(fresh.url, fallback=True, remote_model="gpt-4o-transcribe") as front:
            result = run(
                stream_pcm(
                    front.ws_url,
                    pcm16(bursts(300, 2500, 900)),
                    speed=2.0,
                    options={"partial_backend": "remote"},
                )
            )
    finally:
        fresh.text = "remote words"
    partial_texts = [partial["text"] for partial in result.of_type("transcript.partial")]
    assert "streamed" in partial_texts and "streamed remote words" in partial_texts
    assert any(request.fields.get("stream") == ["true"] for request in fresh.requests)
    assert [final["text"] for final in result.finals] == ["streamed remote words"]


def test_a_partial_backend_the_server_lacks_is_refused(fresh):
    async def refused(url: str) -> list[dict]:
        events = []
        async with websockets.connect(with_query(url, {"partial_backend": "local"})) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    events.append(json.loads(raw))
            assert ws.close_code == 1008
        return events

    with front_server(fresh.url, fallback=False) as front:
        events = run(refused(front.ws_url))
    assert events[-1]["type"] == "error" and events[-1]["code"] == "invalid_session"
    assert "has: remote" in events[-1]["message"]


def serve(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMSCRIBE_REMOTE_API_KEY": SECRET}
    command = [sys.executable, "-m", "streamscribe", "serve", "--backend", "remote"]
    return subprocess.run(
        [*command, "--port", "0", "--remote-url", url, *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("models_status", "model", "message"),
    [(401, "whisper-1", "refused the API key"), (200, "gpt-9", "does not serve model 'gpt-9'")],
)
def test_serve_refuses_to_start_on_a_bad_key_or_model(fresh, models_status, model, message):
    fresh.models_status = models_status
    completed = serve(fresh.url, "--remote-model", model)
    assert completed.returncode == 2 and message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert SECRET not in completed.stderr + completed.stdout


def test_the_rest_api_of_a_remote_backed_server_relays_to_the_remote(fresh):
    with front_server(fresh.url, fallback=False) as front:
        client = OpenAI(base_url=front.http_url + "/v1", api_key="unused")
        text = client.audio.transcriptions.create(
            model="whisper-1",
            file=("speech.wav", wav_bytes(pcm16(bursts(200, 1000, 200)))),
            language="en",
        ).text
    assert text == "remote words"
    assert fresh.requests[-1].authorization == f"Bearer {SECRET}"


def test_a_partial_relayed_by_another_streamscribe_is_decoded_as_a_partial():
    settings = fake_settings()
    transcriber = ScriptedTranscriber(["one two three four five six"], words_per_second=2)
    audio = wav_bytes(pcm16(bursts(1000)))
    with running_server(create_app(settings, transcriber)) as server:

        def post(headers):
            return httpx.post(
                server.http_url + "/v1/audio/transcriptions",
                files={"file": ("a.wav", audio)},
                data={"model": "fake-model"},
                headers=headers,
            ).json()["text"]

        partial = post({"X-StreamScribe-Priority": "partial"})
        final = post({})
    assert (partial, final) == ("one two", "one two three four five six")


def test_the_alias_table_routes_model_names_to_a_backend(fresh):
    settings = dict(remote_fallback="local", model_aliases={"whisper-1": "local", "house": "local"})
    with front_server(fresh.url, fallback=True, **settings) as front:
        client = OpenAI(base_url=front.http_url + "/v1", api_key="unused")
        audio = ("speech.wav", wav_bytes(pcm16(bursts(200, 1000, 200))))
        by_model = {
            model: client.audio.transcriptions.create(model=model, file=audio).text
            for model in ("whisper-1", "house", "gpt-4o-transcribe")
        }
        listed = {model.id for model in client.models.list()}
    assert by_model == {
        "whisper-1": "local one",
        "house": "local two",
        "gpt-4o-transcribe": "remote words",
    }
    assert {"whisper-1", "house", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} <= listed


def test_an_alias_to_a_backend_the_server_lacks_is_a_settings_error():
    with pytest.raises(ValueError, match="this server has primary"):
        ServerSettings(backend="fake", model_aliases={"whisper-1": "local-gpu"})
