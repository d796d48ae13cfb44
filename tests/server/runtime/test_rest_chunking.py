"""``chunking_strategy``: long uploads cut with VAD, transcribed chunk by chunk and stitched
back; a short request is not stuck behind a long one."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from server.backends.fake import ScriptedTranscriber
from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import bursts, pcm16, write_wav
from tests.support import (
    TIMEOUT_S,
    fake_settings,
    manifest,
    require_model,
    running_server,
    shared_file,
    wer,
)
from vad.chunking import merge_regions, speech_regions
from vad.detectors import EnergyDetector
from vad.segmenter import SegmenterOptions

SONNET = "en_librivox_sonnet001.mp3"  # 53 s


def test_speech_regions_and_merging_on_synthetic_bursts():
    audio = bursts(500, 2000, 1500, 3000, 1000)
    regions = speech_regions(audio, EnergyDetector(), SegmenterOptions(silence_duration_ms=500))
    assert len(regions) == 2
    (first_start, first_end), (second_start, second_end) = regions
    assert first_start < 500 * 16 <= first_end and second_start < 4000 * 16 <= second_end
    assert merge_regions(regions) == [(first_start, second_end)]  # fits one 30 s window
    assert merge_regions(regions, max_chunk_samples=16_000 * 3) == regions


def wav(pcm: bytes) -> bytes:
    buffer = io.BytesIO()
    write_wav(buffer, pcm)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny():
    require_model("tiny.en")
    settings = ServerSettings(model="tiny.en", compute_type="int8", beam_size=1)
    with running_server(create_app(settings)) as server:
        yield openai.OpenAI(base_url=server.http_url + "/v1", api_key="x", timeout=TIMEOUT_S * 4)


@pytest.mark.model
@pytest.mark.parametrize(
    "strategy", ["auto", {"type": "server_vad", "silence_duration_ms": 400, "threshold": 0.4}]
)
def test_a_long_file_chunked_with_vad_keeps_its_words_and_times(tiny, strategy):
    reference = next(e["text"] for e in manifest() if e["file"] == SONNET)
    result = tiny.audio.transcriptions.create(
        model="whisper-1",
        file=shared_file(SONNET).open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
        chunking_strategy=strategy,
    )
    assert wer(reference, result.text) <= 0.25, result.text
    starts = [segment.start for segment in result.segments]
    assert starts == sorted(starts) and len(starts) >= 4
    assert 40 < result.segments[-1].end <= result.duration + 0.5  # times are the file's
    word_starts = [word.start for word in result.words]
    assert word_starts == sorted(word_starts) and word_starts[-1] > 30


@pytest.mark.model
def test_chunked_stream_sends_deltas_then_the_whole_text(tiny):
    stream = tiny.audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=shared_file(SONNET).open("rb"),
        stream=True,
        chunking_strategy="auto",
    )
    events = list(stream)
    deltas = [event.delta for event in events if event.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 2
    assert "".join(deltas).strip() == done.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chunking_strategy", "manual"),
        ("chunking_strategy", '{"type": "client_vad"}'),
        ("chunking_strategy", '{"type": "server_vad", "threshold": 2}'),
        ("chunking_strategy[type]", "server_vad"),  # fine alone; below with a bad field
    ],
)
def test_bad_chunking_strategies_are_400(field, value):
    settings = fake_settings()
    with running_server(create_app(settings, ScriptedTranscriber(["x"]))) as server:
        data = {"model": "whisper-1", field: value}
        if field.endswith("[type]"):
            data["chunking_strategy[window]"] = "5"
        response = httpx.post(
            server.http_url + "/v1/audio/transcriptions",
            files={"file": ("a.wav", wav(pcm16(bursts(200, 800, 200))))},
            data=data,
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "chunking_strategy"


def test_a_short_request_is_not_stuck_behind_a_long_file():
    """A 5-minute upload is cut into ~10 chunks; it holds at most one job per worker, so a
    short request sent after it waits for one chunk, not for the whole file."""
    settings = fake_settings(workers=1)
    transcriber = ScriptedTranscriber(delay_s=0.4)
    long_audio = wav(pcm16(np.concatenate([bursts(500, 25_000, 1500)] * 11)))
    short_audio = wav(pcm16(bursts(200, 1000, 200)))
    with running_server(create_app(settings, transcriber)) as server:
        url = server.http_url + "/v1/audio/transcriptions"
        timings: dict[str, float] = {}

        def post(name: str, audio: bytes) -> None:
            started = time.monotonic()
            response = httpx.post(
                url, files={"file": ("a.wav", audio)}, data={"model": "whisper-1"}, timeout=60
            )
            assert response.status_code == 200, response.text
            timings[name] = time.monotonic() - started

        long_request = threading.Thread(target=post, args=("long", long_audio))
        long_request.start()
        time.sleep(1.5)  # the long file is decoded, chunked and being transcribed
        post("short", short_audio)
        long_request.join(TIMEOUT_S)
    assert timings["long"] > 3.0  # ~11 chunks x 0.4 s
    assert timings["short"] < 1.5, timings
