"""Meeting rooms on a real server (scripted backend): two speakers' sessions in one room, a
viewer from the start and one who comes late, the transcript in every format, the limits."""

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

from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import TIMEOUT_S, fake_settings, read_until, run, running_server

SCRIPT = ["alpha words", "bravo words", "charlie words", "delta words", "echo words"]
SPEECH = pcm16(bursts(300, 900, 800, 900, 800))


async def speak(ws_url: str, room: dict[str, Any], speaker: str) -> list[dict[str, Any]]:
    query = urlencode(
        {"room_id": room["room_id"], "join_token": room["join_token"], "speaker": speaker}
    )
    url = f"{ws_url}?{query}"
    async with websockets.connect(url) as session:
        created = json.loads(await session.recv())
        assert created["type"] == "session.created"
        for offset in range(0, len(SPEECH), 3200):
            await session.send(SPEECH[offset : offset + 3200])
        await session.send(json.dumps({"type": "session.close"}))
        return await read_until(session, "session.closed")


def create_room(server, name: str = "Weekly sync", key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{server.http_url}/v1/rooms", json={"name": name}, headers=headers, timeout=TIMEOUT_S
    )


def watch_url(server, room: dict[str, Any], token: str | None = None) -> str:
    base = server.ws_url.replace("/v1/stream", f"/v1/rooms/{room['room_id']}/watch")
    return f"{base}?watch_token={token or room['watch_token']}"


def room_finals(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["speaker"], e["text"]) for e in events if e["type"] == "transcript.final"]


@pytest.fixture
def server():
    app = create_app(fake_settings(), ScriptedTranscriber(SCRIPT))
    with running_server(app) as running:
        yield running


def test_two_speakers_one_transcript_for_early_and_late_viewers(server):
    room = create_room(server).json()
    assert room["room_id"].startswith("room_") and room["name"] == "Weekly sync"

    async def scenario():
        early = await websockets.connect(watch_url(server, room) + "&partials=true")
        started = json.loads(await early.recv())
        spoken = await asyncio.gather(
            speak(server.ws_url, room, "Alice"), speak(server.ws_url, room, "Bob")
        )
        async with websockets.connect(watch_url(server, room)) as late:
            late_events = [json.loads(await late.recv())]
            for _ in range(late_events[0]["finals"]):
                late_events.append(json.loads(await late.recv()))
        closed = httpx.delete(f"{server.http_url}/v1/rooms/{room['room_id']}", timeout=TIMEOUT_S)
        early_events = await read_until(early, "room.closed")
        await early.close()
        return started, spoken, early_events, late_events, closed

    started, spoken, early, late, closed = run(scenario())
    assert started["type"] == "room.started" and started["finals"] == 0
    said = {
        (speaker, e["text"])
        for speaker, events in zip(("Alice", "Bob"), spoken, strict=True)
        for e in events
        if e["type"] == "transcript.final"
    }
    assert len(said) >= 4
    # Both viewers got every final of both speakers, labelled, once each, in the same order.
    assert set(room_finals(early)) == set(room_finals(late)) == said
    assert len(room_finals(early)) == len(room_finals(late)) == len(said)
    starts = [e["room_start_ms"] for e in late if e["type"] == "transcript.final"]
    assert starts == sorted(starts)
    assert late[0]["type"] == "room.started" and late[0]["finals"] == len(said)
    assert any(e["type"] == "transcript.partial" and "speaker" in e for e in early)
    assert {e["speaker"] for e in early if e["type"] == "room.speaker_joined"} == {"Alice", "Bob"}
    assert closed.status_code == 200 and early[-1] == {
        "type": "room.closed",
        "reason": "closed",
        "room_id": room["room_id"],
    }
    # A viewer sees the transcript, not the speakers' prompts or tokens.
    assert not any("prompt" in e or "resume_token" in e for e in early + late)


def test_the_transcript_in_every_format(server):
    room = create_room(server).json()
    run(speak(server.ws_url, room, "Alice"))
    run(speak(server.ws_url, room, "Bob O'Neil"))
    url = f"{server.http_url}/v1/rooms/{room['room_id']}/transcript"

    def get(fmt: str) -> httpx.Response:
        return httpx.get(url, params={"format": fmt, "watch_token": room["watch_token"]})

    finals = get("json").json()["finals"]
    assert {final["speaker"] for final in finals} == {"Alice", "Bob O'Neil"}
    text = get("txt").text.splitlines()
    assert text == [f"{final['speaker']}: {final['text']}" for final in finals]
    srt = get("srt").text
    assert "Alice: " in srt and " --> " in srt
    vtt = get("vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt.text))
    assert [caption.voice for caption in captions] == [final["speaker"] for final in finals]
    assert [caption.start_in_seconds for caption in captions] == sorted(
        caption.start_in_seconds for caption in captions
    )
    assert get("docx").status_code == 400
    wrong = httpx.get(url, params={"format": "txt", "watch_token": "wrong"})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "room_not_found"


async def refused(url: str) -> tuple[dict[str, Any], int | None]:
    async with websockets.connect(url) as websocket:
        error = json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S))
        await websocket.wait_closed()
        return error, websocket.close_code


def test_joins_and_viewers_are_refused_with_their_own_codes():
    settings = fake_settings(max_room_speakers=1, max_room_viewers=1, max_rooms_per_key=2)
    app = create_app(settings, ScriptedTranscriber(SCRIPT))
    with running_server(app) as server:
        room = create_room(server).json()
        base = f"{server.ws_url}?room_id={room['room_id']}"

        async def scenario():
            outcomes = {
                "token": await refused(f"{base}&join_token=wrong&speaker=Alice"),
                "speaker": await refused(f"{base}&join_token={room['join_token']}&speaker=%3Cb%3E"),
                "viewer": await refused(watch_url(server, room, token="wrong")),
            }
            url = f"{base}&join_token={room['join_token']}&speaker=Alice"
            async with (
                websockets.connect(url) as first,
                websockets.connect(watch_url(server, room)) as viewer,
            ):
                await first.recv()
                await viewer.recv()
                outcomes["full"] = await refused(url.replace("Alice", "Bob"))
                outcomes["viewers"] = await refused(watch_url(server, room))
            return outcomes

        outcomes = run(scenario())
        assert create_room(server).status_code == 201
        too_many = create_room(server)
        elsewhere = httpx.delete(f"{server.http_url}/v1/rooms/room_unknown")
    expected = {
        "token": ("room_not_found", 1008),
        "speaker": ("invalid_speaker", 1008),
        "viewer": ("room_not_found", 1008),
        "full": ("too_many_speakers", 1013),
        "viewers": ("too_many_viewers", 1013),
    }
    assert {name: (error["code"], code) for name, (error, code) in outcomes.items()} == expected
    assert too_many.status_code == 429 and too_many.json()["error"]["code"] == "too_many_rooms"
    assert elsewhere.status_code == 404


def test_rooms_need_a_key_and_only_the_creator_closes_one():
    settings = fake_settings(api_keys="sk-alice,sk-bob")
    app = create_app(settings, ScriptedTranscriber(SCRIPT))
    with running_server(app) as server:
        assert create_room(server).status_code == 401
        room = create_room(server, key="sk-alice").json()
        url = f"{server.http_url}/v1/rooms/{room['room_id']}"
        by_bob = httpx.delete(url, headers={"Authorization": "Bearer sk-bob"})
        by_alice = httpx.delete(url, headers={"Authorization": "Bearer sk-alice"})
        transcript = httpx.get(f"{url}/transcript", params={"watch_token": room["watch_token"]})
    assert by_bob.status_code == 404 and by_alice.status_code == 200
    assert transcript.status_code == 404  # the room has ended


def test_a_session_joins_with_session_update_and_a_realtime_client_by_query(server):
    """``session.update`` with the room's keys seats a running /v1/stream session; an OpenAI
    Realtime client joins with the same query parameters; both are labelled in the room."""
    import base64

    from tests.server.web.test_realtime import bursts as realtime_speech

    room = create_room(server).json()
    join = {"room_id": room["room_id"], "join_token": room["join_token"]}

    async def stream_by_update() -> list[dict[str, Any]]:
        async with websockets.connect(server.ws_url) as session:
            await session.recv()
            update = {"type": "session.update", "session": {**join, "speaker": "Carol"}}
            await session.send(json.dumps(update))
            assert json.loads(await session.recv())["type"] == "session.updated"
            again = {"type": "session.update", "session": {**join, "speaker": "Carol"}}
            await session.send(json.dumps(again))
            refused = json.loads(await session.recv())
            for offset in range(0, len(SPEECH), 3200):
                await session.send(SPEECH[offset : offset + 3200])
            await session.send(json.dumps({"type": "session.close"}))
            return [refused, *await read_until(session, "session.closed")]

    async def realtime_by_query() -> None:
        query = urlencode({"intent": "transcription", **join, "speaker": "Dan"})
        url = server.ws_url.replace("/v1/stream", "/v1/realtime") + f"?{query}"
        audio = pcm16(realtime_speech(300, 900, 800))
        async with websockets.connect(url) as realtime:
            await realtime.recv()  # session.created
            for offset in range(0, len(audio), 4800):
                chunk = base64.b64encode(audio[offset : offset + 4800]).decode()
                await realtime.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": chunk})
                )
            await read_until(realtime, "conversation.item.input_audio_transcription.completed")

    async def scenario():
        viewer = await websockets.connect(watch_url(server, room))
        await viewer.recv()
        carol, _ = await asyncio.gather(stream_by_update(), realtime_by_query())
        finals = []
        while {"Carol", "Dan"} - {speaker for speaker, _ in finals}:
            event = json.loads(await asyncio.wait_for(viewer.recv(), TIMEOUT_S))
            if event["type"] == "transcript.final":
                finals.append((event["speaker"], event["text"]))
        await viewer.close()
        return carol, finals

    carol, finals = run(scenario())
    assert carol[0]["type"] == "error" and "already speaks in a room" in carol[0]["message"]
    assert {speaker for speaker, _ in finals} == {"Carol", "Dan"}


def test_a_room_nobody_uses_ends_after_its_idle_timeout():
    import logging
    import time

    from server.settings import RoomSettings, StreamingSettings
    from server.web.rooms import RoomRegistry

    rooms = RoomRegistry(
        RoomSettings(room_idle_timeout_s=60),
        StreamingSettings(),
        logging.LoggerAdapter(logging.getLogger("test")),
    )
    room = rooms.create("anonymous", "Idle")
    rooms.sweep(time.monotonic() + 30)
    assert rooms.find(room.room_id, room.watch_token, joining=False) is room
    rooms.sweep(time.monotonic() + 61)
    assert room.closed
    with pytest.raises(Exception, match="no open room"):
        rooms.find(room.room_id, room.watch_token, joining=False)
