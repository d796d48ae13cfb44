"""The OpenAI-compatible REST API through the official ``openai`` SDK and raw multipart."""

from __future__ import annotations

import itertools

import httpx
import openai
import pytest
import srt
import webvtt

from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import wav_bytes
from tests.support import TIMEOUT_S, require_model, running_server, shared_file

pytestmark = [pytest.mark.model]

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def server():
    require_model("tiny.en")
    settings = ServerSettings(
        model="tiny.en", compute_type="int8", beam_size=1, max_upload_bytes=MAX_UPLOAD
    )
    with running_server(create_app(settings)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(
        base_url=server.http_url + "/v1", api_key="unused", timeout=TIMEOUT_S * 4, max_retries=0
    )


def silent_wav(seconds: float, rate: int = 16000) -> bytes:
    return wav_bytes(b"\x00\x00" * int(rate * seconds), rate)


def jfk():
    return shared_file("en_jfk.flac").open("rb")


def test_json_is_the_default_with_whisper_usage(client):
    result = client.audio.transcriptions.create(model="whisper-1", file=jfk())
    assert "ask not what your country can do for you" in result.text.lower()
    assert result.usage.type == "duration" and result.usage.seconds == 11


def test_text(client):
    text = client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=jfk(), response_format="text"
    )
    assert isinstance(text, str) and "fellow americans" in text.lower()


def test_srt_parses_back_with_increasing_numbered_cues(client):
    body = client.audio.transcriptions.create(model="whisper-1", file=jfk(), response_format="srt")
    cues = list(srt.parse(body))
    assert cues and [cue.index for cue in cues] == list(range(1, len(cues) + 1))
    assert all(cue.start < cue.end for cue in cues)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert "country" in " ".join(cue.content for cue in cues).lower()
    assert all(len(line) <= 60 for cue in cues for line in cue.content.splitlines())


def test_vtt_parses_back(client):
    body = client.audio.transcriptions.create(model="whisper-1", file=jfk(), response_format="vtt")
    assert body.startswith("WEBVTT\n\n")
    captions = webvtt.from_string(body)
    assert captions and "americans" in " ".join(c.text for c in captions).lower()
    assert captions[-1].end_in_seconds <= 11.5


def test_verbose_json_with_segments_and_words(client):
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=jfk(),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "english" and result.duration == pytest.approx(11.0, abs=0.1)
    assert result.segments and result.words
    segment = result.segments[0]
    assert segment.start < segment.end and segment.tokens
    assert -2 < segment.avg_logprob <= 0 and 0 <= segment.no_speech_prob <= 1
    words = [word.word.lower().strip(",.") for word in result.words]
    assert "americans" in words
    assert all(w.start <= w.end for w in result.words)


def test_models_are_listed_like_openai(client):
    ids = {model.id for model in client.models.list()}
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "tiny.en"} <= ids
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize("name", ["en_ls_1272-128104-0000.wav", "en_librivox_sense_0880.wav"])
def test_other_containers_and_rates(client, name):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=shared_file(name).open("rb")
    )
    assert len(result.text.split()) >= 5


def test_mp3_and_ogg_opus_decode(client):
    for name in ("en_librivox_sonnet001.mp3", "es_mls_13697_11991_000000.opus"):
        result = client.audio.transcriptions.create(
            model="whisper-1", file=shared_file(name).open("rb"), response_format="text"
        )
        assert result.strip(), name


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.audio.transcriptions.create(model="whisper-9", file=jfk())


def test_bad_response_format_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.transcriptions.create(model="whisper-1", file=jfk(), response_format="xml")


def test_undecodable_and_too_short_audio_are_bad_requests(client):
    with pytest.raises(openai.BadRequestError, match="corrupted or unsupported"):
        client.audio.transcriptions.create(
            model="whisper-1", file=("notes.mp3", b"definitely not audio" * 50)
        )
    with pytest.raises(openai.BadRequestError, match="too short"):
        client.audio.transcriptions.create(model="whisper-1", file=("tiny.wav", silent_wav(0.05)))


def test_file_over_the_limit_is_413(client):
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("long.wav", silent_wav(70)))
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"


def test_translation_with_an_english_only_model_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client.audio.translations.create(model="whisper-1", file=jfk())


def test_raw_multipart_like_curl(server):
    with jfk() as audio:
        response = httpx.post(
            server.http_url + "/v1/audio/transcriptions",
            files={"file": ("en_jfk.flac", audio, "audio/flac")},
            data={"model": "whisper-1", "response_format": "json"},
            timeout=TIMEOUT_S * 4,
        )
    assert response.status_code == 200
    assert "country" in response.json()["text"].lower()
    missing = httpx.post(server.http_url + "/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "file"
    no_model = httpx.post(
        server.http_url + "/v1/audio/transcriptions", files={"file": ("a.wav", silent_wav(1))}
    )
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "model"


def test_openapi_document_lists_the_endpoints(server):
    paths = httpx.get(server.http_url + "/openapi.json").json()["paths"]
    assert "/v1/audio/transcriptions" in paths and "/v1/audio/translations" in paths
    body = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert "file" in body["multipart/form-data"]["schema"]["properties"]


def test_webm_opus_made_with_pyav_decodes(client, tmp_path):
    import av
    import numpy as np

    from server.core.audio_files import decode_pcm16

    pcm = decode_pcm16(shared_file("en_jfk.flac"), 48000)
    path = tmp_path / "jfk.webm"
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        frame_samples = 960
        for start in range(0, len(pcm) - frame_samples, frame_samples):
            frame = av.AudioFrame.from_ndarray(
                pcm[np.newaxis, start : start + frame_samples], format="s16", layout="mono"
            )
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
    assert "country" in result.text.lower()


def test_stream_sends_deltas_while_decoding_then_done(client):
    events = list(
        client.audio.transcriptions.create(
            model="gpt-4o-mini-transcribe",
            file=shared_file("en_librivox_sonnet001.mp3").open("rb"),
            stream=True,
        )
    )
    deltas = [event for event in events if event.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert len(deltas) >= 3  # 53 s: several segments over two 30 s windows
    assert "".join(delta.delta for delta in deltas).strip() == done.text
    assert "fairest creatures" in done.text.lower()


def test_stream_deltas_arrive_before_the_whole_file_is_decoded(server):
    import time

    with (
        shared_file("en_librivox_sonnet001.mp3").open("rb") as audio,
        httpx.stream(
            "POST",
            server.http_url + "/v1/audio/transcriptions",
            files={"file": ("sonnet.mp3", audio)},
            data={"model": "whisper-1", "stream": "true"},
            timeout=TIMEOUT_S * 4,
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        arrivals = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line))
    first_delta = next(t for t, line in arrivals if "transcript.text.delta" in line)
    done_at = next(t for t, line in arrivals if "transcript.text.done" in line)
    assert done_at - first_delta > 0.1  # the second window was still decoding


def test_stream_with_subtitle_formats_is_refused(client):
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.audio.transcriptions.create(
            model="whisper-1", file=jfk(), stream=True, response_format="srt"
        )


def test_include_logprobs_gives_one_entry_per_word(client):
    result = client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=jfk(), include=["logprobs"]
    )
    logprobs = result.logprobs
    assert len(logprobs) >= 15
    assert "".join(entry.token for entry in logprobs).strip() == result.text.strip()
    assert all(entry.logprob <= 0 for entry in logprobs)
    assert all(bytes(int(b) for b in entry.bytes).decode() == entry.token for entry in logprobs)
    assert sum(entry.logprob for entry in logprobs) / len(logprobs) > -1.0  # a clear recording


def test_include_logprobs_needs_json_and_streams_in_done(client):
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.audio.transcriptions.create(
            model="whisper-1", file=jfk(), include=["logprobs"], response_format="text"
        )
    events = list(
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=jfk(), include=["logprobs"], stream=True
        )
    )
    done = events[-1]
    assert done.type == "transcript.text.done" and len(done.logprobs) >= 15
