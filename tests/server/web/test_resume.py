"""Resumable sessions: the connection is cut mid-utterance by a proxy, the client reconnects,
and the transcript has no gap and no duplicate against a run without the cut."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import websockets

from client.stream import stream_pcm, with_query
from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.server.cutting_proxy import CuttingProxy
from tests.support import fake_settings, run, running_server

SCRIPT = ["first sentence here", "the second one", "third words", "and the fourth"]
FOUR_UTTERANCES = pcm16(bursts(300, 1200, 900, 1500, 900, 1000, 900, 1300, 900))


def server(**overrides):
    settings = fake_settings(**overrides)
    return running_server(create_app(settings, ScriptedTranscriber(SCRIPT, delay_s=0.05)))


def transcript(result) -> list[tuple[int, str]]:
    return [(final["utterance_id"], final["text"]) for final in result.finals]


def test_a_cut_mid_utterance_loses_nothing_and_repeats_nothing():
    with server() as plain:
        reference = run(stream_pcm(plain.ws_url, FOUR_UTTERANCES, speed=3.0))
    with server() as target:

        async def cut_run():
            async with CuttingProxy(target.port) as proxy:

                def on_event(event):
                    # Mid-utterance: the second utterance has started, its final is not out.
                    if event["type"] == "speech.started" and event["utterance_id"] == 2:
                        asyncio.get_running_loop().call_later(0.3, proxy.cut)

                result = await stream_pcm(
                    proxy.ws_url, FOUR_UTTERANCES, speed=3.0, on_event=on_event
                )
                return result, proxy.cuts

        result, cuts = run(cut_run())
    assert cuts == 1 and result.reconnects == 1 and result.duplicates == 0
    assert len(result.of_type("session.resumed")) == 1
    assert transcript(result) == transcript(reference) and len(transcript(result)) == 4
    assert result.events[-1]["type"] == "session.closed"


def test_finals_made_while_detached_are_replayed_once_on_resume():
    audio = pcm16(bursts(300, 1200, 900, 1200, 900))

    async def scenario(url):
        async with websockets.connect(url) as websocket:
            created = json.loads(await websocket.recv())
            await websocket.send(audio)
            await websocket.send(json.dumps({"type": "session.close"}))
            # Gone before any final could arrive: the transport dies without a close frame.
            websocket.transport.abort()
        await asyncio.sleep(0.5)  # the finals are made meanwhile
        resume = with_query(
            url,
            {
                "session_id": created["session_id"],
                "resume_token": created["resume_token"],
                "last_final_id": 0,
            },
        )
        async with websockets.connect(resume) as websocket:
            return [json.loads(raw) async for raw in websocket]

    with server() as target:
        events = run(scenario(target.ws_url))
    assert events[0]["type"] == "session.resumed" and events[0]["replayed_finals"] == 2
    assert events[0]["last_audio_seq"] == 1
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == SCRIPT[:2]
    assert events[-1]["type"] == "session.closed"


@pytest.mark.parametrize("wrong", ["token", "expired"])
def test_a_resume_with_a_wrong_token_or_after_the_grace_period_is_refused(wrong):
    async def scenario(url):
        async with websockets.connect(url) as websocket:
            created = json.loads(await websocket.recv())
            websocket.transport.abort()
        await asyncio.sleep(0.6 if wrong == "expired" else 0.1)
        resume = with_query(
            url,
            {
                "session_id": created["session_id"],
                "resume_token": "guess" if wrong == "token" else created["resume_token"],
            },
        )
        events = []
        async with websockets.connect(resume) as websocket:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in websocket:
                    events.append(json.loads(raw))
            return events, websocket.close_code

    with server(resume_grace_s=0.3) as target:
        events, close_code = run(scenario(target.ws_url))
    assert events[0]["code"] == "resume_failed" and close_code == 1008


def test_a_deliberate_close_ends_the_session_and_frees_its_slot():
    async def scenario(url):
        async with websockets.connect(url) as websocket:
            await websocket.recv()
        await asyncio.sleep(0.2)
        async with websockets.connect(url) as websocket:
            return json.loads(await websocket.recv())

    with server(max_sessions=1) as target:
        assert run(scenario(target.ws_url))["type"] == "session.created"
