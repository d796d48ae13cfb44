"""Meetings with real speech: two speakers in one room at overlapping times (tiny.en), a German,
a French and a Spanish recording translated into English (base), and keywords that spell a
rare name right (tiny.en)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets
import webvtt

from client.stream import stream_pcm
from server.settings import ServerSettings
from server.web.app import create_app
from tests.support import (
    TIMEOUT_S,
    read_until,
    references,
    require_model,
    run,
    running_server,
    spoken,
    wer,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]

ALICE = ["en_ls_1272-128104-0000.wav", "en_goforward.wav"]
BOB = ["en_librivox_sense_0880.wav", "en_ls_61-70968-0000.flac"]
CALM: dict[str, Any] = {
    "compute_type": "int8",
    "cpu_threads": 2,
    "admission": False,
    "final_latency_budget_ms": 60_000,
    "max_final_load": 1.0,
}


@pytest.fixture(scope="module")
def tiny():
    require_model("tiny.en")
    with running_server(create_app(ServerSettings(model="tiny.en", **CALM))) as server:
        assert server.app.state.scheduler.load_error is None
        yield server


def test_two_speakers_at_overlapping_times_in_one_room(tiny):
    room = httpx.post(f"{tiny.http_url}/v1/rooms", json={"name": "Standup"}).json()
    watch = tiny.ws_url.replace("/v1/stream", f"/v1/rooms/{room['room_id']}/watch")
    watch += f"?watch_token={room['watch_token']}"

    def url(speaker: str) -> str:
        query = {"room_id": room["room_id"], "join_token": room["join_token"], "speaker": speaker}
        return f"{tiny.ws_url}?{urlencode({**query, 'include': 'words', 'language': 'en'})}"

    async def scenario():
        early = await websockets.connect(watch)
        bob_may_start = asyncio.Event()

        def alice_events(event: dict[str, Any]) -> None:
            if event["type"] == "speech.started":
                bob_may_start.set()  # Bob talks while Alice does

        async def bob():
            await bob_may_start.wait()
            return await stream_pcm(url("Bob"), spoken(BOB), speed=1.0)

        alice_result, bob_result = await asyncio.gather(
            stream_pcm(url("Alice"), spoken(ALICE), speed=1.0, on_event=alice_events), bob()
        )
        async with websockets.connect(watch) as late:
            late_events = [json.loads(await late.recv())]
            for _ in range(late_events[0]["finals"]):
                late_events.append(json.loads(await late.recv()))
        transcript = httpx.get(
            f"{tiny.http_url}/v1/rooms/{room['room_id']}/transcript",
            params={"format": "vtt", "watch_token": room["watch_token"]},
            timeout=TIMEOUT_S,
        )
        httpx.delete(f"{tiny.http_url}/v1/rooms/{room['room_id']}", timeout=TIMEOUT_S)
        early_events = await read_until(early, "room.closed")
        await early.close()
        return alice_result, bob_result, early_events, late_events, transcript.text

    alice, bob, early, late, vtt = run(scenario())

    def finals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == "transcript.final"]

    expected = {("Alice", f["utterance_id"]) for f in alice.finals if f["text"].strip()} | {
        ("Bob", f["utterance_id"]) for f in bob.finals if f["text"].strip()
    }
    for events in (early, late):
        got = [(f["speaker"], f["utterance_id"]) for f in finals(events)]
        assert sorted(got) == sorted(expected)  # each final of both speakers, once
    late_starts = [f["room_start_ms"] for f in finals(late)]
    assert late_starts == sorted(late_starts)
    for speaker, names in (("Alice", ALICE), ("Bob", BOB)):
        text = " ".join(f["text"] for f in finals(late) if f["speaker"] == speaker)
        assert wer(references(names), text) <= 0.15, (speaker, text)
    assert all(f["words"] for f in finals(late))
    # The room's transcript as WebVTT, read by a real parser: both voices, in time order.
    captions = webvtt.from_buffer(io.StringIO(vtt))
    assert [caption.voice for caption in captions] == [f["speaker"] for f in finals(late)]
    assert {caption.voice for caption in captions} == {"Alice", "Bob"}
    starts = [caption.start_in_seconds for caption in captions]
    assert starts == sorted(starts)


def test_keywords_spell_a_rare_name_right(tiny):
    audio = spoken(["en_ami_ES2011a_40-46s.wav"])

    async def both():
        plain = await stream_pcm(tiny.ws_url, audio, speed=None, options={"language": "en"})
        helped = await stream_pcm(
            tiny.ws_url,
            audio,
            speed=None,
            options={"language": "en", "keywords": "Abigail Claflin,Abbie"},
        )
        return plain.text, helped.text

    plain, helped = run(both())
    assert "Claflin" not in plain, plain  # tiny.en hears "Klafflin"
    assert "Claflin" in helped, helped


def test_translation_is_refused_on_an_english_only_model(tiny):
    async def attempt():
        async with websockets.connect(f"{tiny.ws_url}?task=translate") as websocket:
            error = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S))
            await websocket.wait_closed()
            return error, websocket.close_code

    error, code = run(attempt())
    assert error["code"] == "invalid_session" and "multilingual" in error["message"]
    assert code == 1008


SOURCE_WORDS = {
    "der",
    "die",
    "und",
    "das",
    "wurde",
    "la",
    "le",
    "les",
    "et",
    "est",
    "los",
    "las",
    "el",
    "y",
    "son",
    "tiene",
    "muy",
    "dictée",
    "numéro",
}
ENGLISH_WORDS = {"the", "and", "that", "this", "is", "was", "of", "has", "very", "number", "with"}


def test_german_french_and_spanish_speech_is_translated_into_english():
    require_model("base")
    settings = ServerSettings(model="base", **CALM)
    files = ["de_picovoice.wav", "fr_dictee.wav", "es_picovoice.wav"]
    with running_server(create_app(settings)) as server:

        async def translate(name: str) -> str:
            result = await stream_pcm(
                server.ws_url, spoken([name]), speed=None, options={"task": "translate"}
            )
            return result.text

        texts = [run(translate(name)) for name in files]
    for name, text in zip(files, texts, strict=True):
        words = set(text.lower().replace(".", " ").replace(",", " ").split())
        assert words & ENGLISH_WORDS and not words & SOURCE_WORDS, (name, text)
