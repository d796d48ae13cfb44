"""Admission control and load notices on a real server whose finals are slower than its budget."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from server.backends.fake import ScriptedTranscriber
from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import bursts, pcm16
from tests.support import TIMEOUT_S, run, running_server

# Four utterances: four finals, each answered a second after it was asked for.
SPEECH = pcm16(bursts(300, 800, 900, 800, 900, 800, 900, 800, 900))


def overloaded_app():
    settings = ServerSettings(
        backend="fake",
        model="fake-model",
        final_latency_budget_ms=200,
        # Wide enough to hold three of the four finals however the two workers interleave
        # them with partials (the fewest the monitor judges latency from).
        load_window_s=6,
        load_recover_s=0.3,
    )
    return create_app(settings, ScriptedTranscriber(["slow words"], delay_s=1.0))


async def next_of(websocket, seen: list[dict], *types: str) -> dict:
    """The next event of one of ``types``; every event read is kept in ``seen``."""
    while True:
        seen.append(json.loads(await asyncio.wait_for(websocket.recv(), TIMEOUT_S)))
        if seen[-1]["type"] in types:
            return seen[-1]


def test_slow_finals_pause_partials_refuse_new_sessions_then_recover():
    async def scenario(server):
        seen: list[dict] = []
        async with websockets.connect(server.ws_url + "?language=en") as speaker:
            await speaker.send(SPEECH)
            degraded = await next_of(speaker, seen, "session.degraded")
            paused = degraded
            while paused["partials"] != "paused":
                paused = await next_of(speaker, seen, "session.degraded")
            assert paused["final_latency_p95_ms"] > 200
            assert "final latency p95" in paused["reason"]

            stats = httpx.get(server.http_url + "/stats").json()
            assert stats["load"]["partials"] == "paused"
            metrics = httpx.get(server.http_url + "/metrics").text
            assert "streamscribe_load_level 2.0" in metrics

            async with websockets.connect(server.ws_url) as newcomer:
                refusal = json.loads(await asyncio.wait_for(newcomer.recv(), TIMEOUT_S))
                await asyncio.wait_for(newcomer.wait_closed(), TIMEOUT_S)
            assert refusal["type"] == "error" and refusal["code"] == "server_overloaded"
            assert newcomer.close_code == 1013

            # The slow finals leave the window; the levels step back down to normal.
            recovered = await next_of(speaker, seen, "session.recovered")
            assert recovered["partials"] == "normal"
            await speaker.send(json.dumps({"type": "session.close"}))
            await next_of(speaker, seen, "session.closed")
        return [event for event in seen if event["type"] == "transcript.final"]

    with running_server(overloaded_app()) as server:
        finals = run(scenario(server))
    # Degrading shed only partials: every utterance still got its final.
    assert [final["utterance_id"] for final in finals] == [1, 2, 3, 4]
    assert {final["text"] for final in finals} == {"slow words"}


def test_sessions_after_an_overloaded_one_closed_are_admitted_together():
    """The idle-server case of a burst: a session whose finals overloaded the server closed;
    two sessions open at once next, and the second is judged by the first (no final yet), not
    by the finals of the session that left."""

    async def scenario(server):
        seen: list[dict] = []
        async with websockets.connect(server.ws_url + "?language=en") as speaker:
            await speaker.send(SPEECH)
            paused = await next_of(speaker, seen, "session.degraded")
            while paused["partials"] != "paused":
                paused = await next_of(speaker, seen, "session.degraded")
            await speaker.send(json.dumps({"type": "session.close"}))
            await next_of(speaker, seen, "session.closed")
        async with httpx.AsyncClient() as client:
            while (await client.get(server.http_url + "/stats")).json()["active_sessions"]:
                await asyncio.sleep(0.05)  # polling the server's count of open sessions
        async with (
            websockets.connect(server.ws_url) as first,
            websockets.connect(server.ws_url) as second,
        ):
            created = [
                json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S)) for ws in (first, second)
            ]
        return created

    with running_server(overloaded_app()) as server:
        created = run(scenario(server))
    assert [event["type"] for event in created] == ["session.created"] * 2


def test_a_crowd_comes_in_as_fast_as_its_load_is_measured():
    """Two sessions open with no final yet: their load is unknown, so a third is asked to come
    back (1013) rather than admitted on a load of zero; once one of them has a final, the third
    is judged by it and admitted."""
    settings = ServerSettings(backend="fake", model="fake-model", admission_burst=2)
    app = create_app(settings, ScriptedTranscriber(["quick words"]))

    async def scenario(server):
        seen: list[dict] = []
        async with (
            websockets.connect(server.ws_url + "?language=en") as first,
            websockets.connect(server.ws_url) as second,
        ):
            for websocket in (first, second):
                await next_of(websocket, seen, "session.created")
            async with websockets.connect(server.ws_url) as third:
                refusal = json.loads(await asyncio.wait_for(third.recv(), TIMEOUT_S))
                await asyncio.wait_for(third.wait_closed(), TIMEOUT_S)
            assert third.close_code == 1013
            await first.send(pcm16(bursts(300, 800, 900)))
            await next_of(first, seen, "transcript.final")
            async with websockets.connect(server.ws_url) as later:
                admitted = json.loads(await asyncio.wait_for(later.recv(), TIMEOUT_S))
        return refusal, admitted

    with running_server(app) as server:
        refusal, admitted = run(scenario(server))
    assert refusal["code"] == "server_overloaded" and "admission_burst" in refusal["message"]
    assert admitted["type"] == "session.created"
