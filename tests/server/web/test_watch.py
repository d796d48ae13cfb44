"""Shared captions at the server level: ``/v1/watch/{session_id}`` with the watch token, for a
viewer who joins before the speech and one who joins after finals exist."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import TIMEOUT_S, fake_settings, run, running_server

SCRIPT = ["first words here", "and the second", "third one"]
SPEECH = pcm16(bursts(300, 1000, 900, 1000, 900, 1000, 900))


async def read_until_closed(websocket: Any) -> list[dict[str, Any]]:
    events = []
    async for raw in websocket:
        events.append(json.loads(raw))
        if events[-1]["type"] == "session.closed":
            break
    return events


async def speaker_and_viewers(ws_url: str) -> tuple[list, list, list]:
    watch_base = ws_url.replace("/v1/stream", "/v1/watch")
    async with websockets.connect(ws_url) as speaker:
        created = json.loads(await speaker.recv())
        watch_url = f"{watch_base}/{created['session_id']}?watch_token={created['watch_token']}"
        early = await websockets.connect(watch_url)
        assert json.loads(await early.recv()) == {
            "type": "watch.started",
            "session_id": created["session_id"],
            "finals": 0,
        }
        early_reader = asyncio.create_task(read_until_closed(early))
        spoken: list[dict[str, Any]] = []
        half = len(SPEECH) // 2
        for offset in range(0, half, 3200):
            await speaker.send(SPEECH[offset : min(offset + 3200, half)])
        while not any(e["type"] == "transcript.final" for e in spoken):
            spoken.append(json.loads(await speaker.recv()))  # wait for a final to exist
        late = await websockets.connect(watch_url)
        late_reader = asyncio.create_task(read_until_closed(late))
        for offset in range(half, len(SPEECH), 3200):
            await speaker.send(SPEECH[offset : offset + 3200])
        await speaker.send(json.dumps({"type": "session.close"}))
        spoken += await read_until_closed(speaker)
        watched_early, watched_late = await asyncio.gather(early_reader, late_reader)
        await early.close()
        await late.close()
    return spoken, watched_early, watched_late


def finals(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["utterance_id"], e["text"]) for e in events if e["type"] == "transcript.final"]


def test_early_and_late_viewers_get_every_final_once_in_order():
    app = create_app(fake_settings(), ScriptedTranscriber(SCRIPT))
    with running_server(app) as server:
        spoken, early, late = run(speaker_and_viewers(server.ws_url))
    assert finals(spoken) == list(enumerate(SCRIPT, 1))
    assert finals(early) == finals(late) == finals(spoken)
    assert late[0]["type"] == "watch.started" and late[0]["finals"] >= 1  # the log came first
    assert any(e["type"] == "transcript.partial" for e in early)
    assert early[-1]["type"] == late[-1]["type"] == "session.closed"
    # Viewers see the transcript, not the speaker's credentials or control messages.
    assert not any(e["type"] in ("input_audio.ack", "session.created") for e in early + late)


def test_a_wrong_watch_token_or_an_unknown_session_is_refused():
    app = create_app(fake_settings(), ScriptedTranscriber(SCRIPT))

    async def scenario() -> list[tuple[dict[str, Any], int | None]]:
        outcomes = []
        async with websockets.connect(server.ws_url) as speaker:
            created = json.loads(await speaker.recv())
            base = server.ws_url.replace("/v1/stream", "/v1/watch")
            for url in (
                f"{base}/{created['session_id']}?watch_token=wrong",
                f"{base}/sess_unknown?watch_token={created['watch_token']}",
            ):
                async with websockets.connect(url) as viewer:
                    error = json.loads(await asyncio.wait_for(viewer.recv(), TIMEOUT_S))
                    await viewer.wait_closed()
                    outcomes.append((error, viewer.close_code))
        return outcomes

    with running_server(app) as server:
        outcomes = run(scenario())
    for error, close_code in outcomes:
        assert error["type"] == "error" and error["code"] == "watch_failed" and close_code == 1008
