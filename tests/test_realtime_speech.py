"""Real speech through ``/v1/realtime`` on tiny.en, driven by the official ``openai`` SDK and by
the OpenAI Agents SDK's ``OpenAISTTModel``, beside ``/v1/stream`` on the same bytes: the same
transcripts, live deltas before ``speech_stopped``, manual commits one item each."""

from __future__ import annotations

import asyncio
import base64
import importlib.util

import numpy as np
import openai
import pytest

from client.sources import decode_file
from client.stream import stream_pcm
from server.core.g711 import decode_g711
from server.settings import ServerSettings
from server.web.app import create_app
from tests.support import (
    ENGLISH_FILES,
    manifest,
    require,
    require_model,
    run,
    running_server,
    shared_file,
    spoken,
    wer,
)
from tests.support import (
    references as reference_text,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]

ENGLISH = ENGLISH_FILES
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


TINY: dict = {
    "model": "tiny.en",
    "compute_type": "int8",
    "beam_size": 1,
    "cpu_threads": 2,
    "admission": False,
    # What is tested is the protocol, not the load policy: on a slow or busy machine the
    # policy would rightly pause partials, and with them the deltas.
    "final_latency_budget_ms": 60_000,
    "max_final_load": 1.0,
}


@pytest.fixture(scope="module")
def server():
    require_model("tiny.en")
    # One request at a time, unbatched: the two protocols' requests then decode alike, and the
    # comparison is of the protocols, not of batch compositions.
    settings = ServerSettings(**TINY, max_batch_size=1)
    with running_server(create_app(settings)) as running:
        assert running.app.state.scheduler.load_error is None
        yield running


def references() -> str:
    return reference_text(ENGLISH)


def speech(rate_hz: int) -> bytes:
    return spoken(ENGLISH, rate_hz)


def to_mulaw(pcm: bytes) -> bytes:
    import av

    codec = av.CodecContext.create("pcm_mulaw", "w")
    codec.sample_rate, codec.layout, codec.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    return b"".join(bytes(packet) for packet in codec.encode(frame))


async def paced(chunks: list[bytes], seconds_each: float, send) -> None:
    """Send at real-time pace, as a microphone would (pacing, not synchronisation)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, chunk in enumerate(chunks):
        await send(chunk)
        await asyncio.sleep(max(0.0, start + (index + 1) * seconds_each - loop.time()))


def chunks_of(audio: bytes, size: int) -> list[bytes]:
    return [audio[start : start + size] for start in range(0, len(audio), size)]


async def realtime_session(port: int, audio: bytes, audio_format: dict, chunk: int) -> list:
    client = openai.AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://127.0.0.1:{port}/v1")
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.recv()  # session.created
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": audio_format,
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": {"type": "server_vad"},
                }
            },
        }
        await connection.session.update(session=session)
        assert (await connection.recv()).type == "session.updated"
        events: list = []

        async def listen() -> None:
            async for event in connection:
                events.append(event)

        listener = asyncio.create_task(listen())

        async def send(piece: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(piece).decode())

        await paced(chunks_of(audio, chunk), 0.02, send)
        await connection.input_audio_buffer.commit()  # whatever speech is still open
        committed = lambda: [e for e in events if e.type == "input_audio_buffer.committed"]  # noqa: E731
        while len([e for e in events if e.type == COMPLETED]) < len(committed()) or not committed():
            await asyncio.sleep(0.05)  # polling our own list that the listener fills
        listener.cancel()
        return events


def transcript(events: list) -> str:
    return " ".join(e.transcript for e in events if e.type == COMPLETED and e.transcript)


def test_realtime_matches_the_stream_on_the_same_audio_with_live_deltas(server):
    audio = speech(24000)

    async def scenario():
        # One after the other: each session has the server to itself, as one user would.
        realtime = await realtime_session(
            server.port, audio, {"type": "audio/pcm", "rate": 24000}, 960
        )
        streamed = await stream_pcm(
            server.ws_url, audio, sample_rate_hz=24000, chunk_ms=20, options={"language": "en"}
        )
        return realtime, streamed

    events, streamed = run(scenario())
    reference = references()
    realtime_wer, stream_wer = wer(reference, transcript(events)), wer(reference, streamed.text)
    assert realtime_wer <= stream_wer + 0.01 and realtime_wer <= 0.15, (
        transcript(events),
        streamed.text,
    )
    started = {e.item_id: e for e in events if e.type == "input_audio_buffer.speech_started"}
    stopped = {e.item_id: e for e in events if e.type == "input_audio_buffer.speech_stopped"}
    long_items = [
        item
        for item, stop in stopped.items()
        # Over 2 s of speech (the pre-roll and end padding aside): the partials while the
        # speaker talks, and the pause partial once they pause, agree on words before the
        # silence window closes. benchmarks/realtime.py measures the share on more files.
        if stop.audio_end_ms - started[item].audio_start_ms - 500 > 2000
    ]
    assert len(long_items) == len(ENGLISH)
    for item in long_items:
        position = {id(e): index for index, e in enumerate(events)}
        first_delta = next(e for e in events if e.type == DELTA and e.item_id == item)
        assert position[id(first_delta)] < position[id(stopped[item])], [
            (e.type, getattr(e, "item_id", None), getattr(e, "delta", None)) for e in events
        ]
    for event in events:
        if event.type == COMPLETED and event.transcript:
            deltas = "".join(
                e.delta for e in events if e.type == DELTA and e.item_id == event.item_id
            )
            assert event.transcript.startswith(deltas.strip()) or not deltas


def test_g711_matches_the_stream_on_the_same_bytes(server):
    mulaw = to_mulaw(speech(8000))

    async def scenario():
        return await asyncio.gather(
            realtime_session(server.port, mulaw, {"type": "audio/pcmu"}, 160),
            stream_pcm(
                server.ws_url,
                mulaw,
                sample_rate_hz=8000,
                chunk_ms=40,  # the client counts PCM16 bytes: 40 ms of them is 20 ms of G.711
                options={"language": "en", "encoding": "g711_ulaw"},
            ),
        )

    events, streamed = run(scenario())
    reference = references()
    realtime_wer, stream_wer = wer(reference, transcript(events)), wer(reference, streamed.text)
    assert realtime_wer <= stream_wer + 0.01 and realtime_wer <= 0.2, (
        transcript(events),
        streamed.text,
    )
    decoded = decode_g711(mulaw[:8000], "g711_ulaw")
    assert np.abs(decoded).max() > 0.01  # it was speech, not silence, that was compared


def test_manual_commits_give_one_item_per_file_in_order(server):
    async def scenario():
        client = openai.AsyncOpenAI(
            api_key="unused", websocket_base_url=f"ws://127.0.0.1:{server.port}/v1"
        )
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
            await connection.recv()
            session = {
                "type": "transcription",
                "audio": {"input": {"turn_detection": None, "transcription": {"language": "en"}}},
            }
            await connection.session.update(session=session)
            await connection.recv()
            events: list = []
            for name in ENGLISH:
                audio = decode_file(shared_file(name), 24000)
                for piece in chunks_of(audio, 48000):
                    await connection.input_audio_buffer.append(
                        audio=base64.b64encode(piece).decode()
                    )
                await connection.input_audio_buffer.commit()
            while len([e for e in events if e.type == COMPLETED]) < len(ENGLISH):
                events.append(await connection.recv())
            return events

    events = run(scenario())
    committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    completed = [e for e in events if e.type == COMPLETED]
    assert [e.item_id for e in completed] == committed and len(committed) == len(ENGLISH)
    assert not [e for e in events if e.type.startswith("input_audio_buffer.speech")]
    texts = {entry["file"]: entry["text"] for entry in manifest()}
    for name, event in zip(ENGLISH, completed, strict=True):
        assert wer(texts[name], event.transcript) <= 0.25, (name, event.transcript)


def test_agents_sdk_streamed_transcription(server):
    require(importlib.util.find_spec("agents") is not None, "openai-agents is not installed")
    from agents.voice import StreamedAudioInput, STTModelSettings
    from agents.voice.models.openai_stt import OpenAISTTModel

    audio = np.frombuffer(speech(24000), dtype=np.int16)
    client = openai.AsyncOpenAI(
        api_key="unused", websocket_base_url=f"ws://127.0.0.1:{server.port}/v1"
    )
    model = OpenAISTTModel("gpt-4o-transcribe", openai_client=client)

    async def scenario() -> list[str]:
        audio_input = StreamedAudioInput()
        # Its defaults: semantic_vad, and it never commits before the input ends.
        session = await model.create_session(
            audio_input,
            STTModelSettings(language="en"),
            trace_include_sensitive_data=False,
            trace_include_sensitive_audio_data=False,
        )
        pieces = [audio[start : start + 1200] for start in range(0, len(audio), 1200)]

        async def send_all() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for index, piece in enumerate(pieces):
                await audio_input.add_audio(piece)
                await asyncio.sleep(max(0.0, start + (index + 1) * 0.05 - loop.time()))
            await audio_input.add_audio(None)

        sender = asyncio.create_task(send_all())
        turns = [turn async for turn in session.transcribe_turns()]
        await sender
        return turns

    turns = run(scenario())
    assert len(turns) >= len(ENGLISH) - 1
    assert wer(references(), " ".join(turns)) <= 0.15, turns


def test_a_gateway_on_a_remote_model_gets_finals_remotely_and_deltas_locally(server):
    """A front server whose backend is a remote gpt-4o-transcribe (here: the tiny.en server
    under that name) with tiny.en beside it: finals from the remote, deltas from local
    partials, over OpenAI's protocol."""
    import httpx

    settings = ServerSettings(
        backend="remote",
        remote_url=server.http_url + "/v1",
        remote_model="gpt-4o-transcribe",
        remote_api_key="sk-x",
        remote_fallback="local",
        **TINY,
    )
    name = "en_ls_1272-128104-0000.wav"
    audio = decode_file(shared_file(name), 24000)
    with running_server(create_app(settings)) as front:
        events = run(realtime_session(front.port, audio, {"type": "audio/pcm", "rate": 24000}, 960))
        stats = httpx.get(front.http_url + "/stats").json()
    texts = {entry["file"]: entry["text"] for entry in manifest()}
    assert wer(texts[name], transcript(events)) <= 0.2, transcript(events)
    assert [e for e in events if e.type == DELTA]
    assert stats["usage"]["remote"]["requests"] >= 1 and stats["failovers"] == 0
    assert stats["usage"]["local"]["requests"] >= 1  # the partials, with no failover
