"""Real speech from ../shared/audio through a real server with the bundled models."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import pytest

from client.sources import decode_file
from client.stream import stream_pcm
from server.settings import ServerSettings
from server.web.app import create_app
from tests.support import ROOT, manifest, require_model, run, running_server, shared_file, wer

pytestmark = [pytest.mark.model, pytest.mark.slow]

# Short English files with clean references (see ../shared/audio/README.md).
ENGLISH = [
    "en_ls_1272-128104-0000.wav",
    "en_jfk.flac",
    "en_librivox_sense_0880.wav",
    "en_goforward.wav",
]


def model_server(model: str, **overrides: object):
    require_model(model)
    # One server serves every test of the module, several faster than real time and beside
    # other servers on the same cores: admission control (tested in test_admission) would
    # rightly start refusing them. Batches of 4 (the GPU default) so that batching is
    # exercised on CPU too.
    settings = ServerSettings(
        model=model,
        compute_type="int8",
        beam_size=1,
        cpu_threads=2,
        admission=False,
        max_batch_size=4,
        **overrides,
    )
    return running_server(create_app(settings))


@pytest.fixture(scope="module")
def tiny_server():
    with model_server("tiny.en") as server:
        assert server.app.state.scheduler.load_error is None
        yield server


def references() -> dict[str, str]:
    return {entry["file"]: entry["text"] for entry in manifest()}


def test_tiny_en_streams_real_speech_with_partials_and_low_wer(tiny_server):
    refs = references()
    hypotheses = []
    for name in ENGLISH:
        pcm = decode_file(shared_file(name))
        result = run(stream_pcm(tiny_server.ws_url, pcm, speed=2.0, options={"language": "en"}))
        types = [event["type"] for event in result.events]
        assert types[-1] == "session.closed"
        if len(pcm) / 32_000 >= 5:  # a short file may end before a partial comes back
            assert "transcript.partial" in types, name
        finals = result.finals
        started = result.of_type("speech.started")
        assert len(finals) == len(started) >= 1
        for final in finals:
            assert final["start_ms"] < final["end_ms"]
            assert final["latency_ms"] >= 0 and final["language"] == "en"
            assert final["backend"] == "local"
        # The last final arrives before session.closed.
        assert types.index("session.closed") > types.index("transcript.final")
        hypotheses.append(result.text)
    score = wer([refs[name] for name in ENGLISH], hypotheses)
    assert score <= 0.15, (score, hypotheses)


def test_prompt_carry_over_is_visible_in_the_requests(tiny_server):
    # Two files joined with a pause: the second utterance's prompt is the first's final.
    import numpy as np

    first = np.frombuffer(decode_file(shared_file("en_librivox_sense_0880.wav")), "<i2")
    second = np.frombuffer(decode_file(shared_file("en_librivox_sense_0930.wav")), "<i2")
    pause = np.zeros(16_000 * 3 // 2, dtype="<i2")
    pcm = np.concatenate([first, pause, second]).tobytes()
    result = run(stream_pcm(tiny_server.ws_url, pcm, speed=4.0, options={"prompt": "Dashwood."}))
    finals = [final for final in result.finals if final["text"]]
    assert len(finals) >= 2
    assert finals[0]["prompt"] == "Dashwood."
    assert finals[1]["prompt"].startswith("Dashwood. ")
    assert finals[0]["text"] in finals[1]["prompt"]


def test_base_model_is_multilingual_and_detects_language():
    with model_server("base") as server:
        pcm = decode_file(shared_file("de_picovoice.wav"))
        result = run(stream_pcm(server.ws_url, pcm, speed=None))
        assert result.finals and result.finals[0]["language"] == "de"
        assert "portal" in result.text.lower() or "raum" in result.text.lower()
        english = decode_file(shared_file("en_ls_1272-128104-0000.wav"))
        result = run(stream_pcm(server.ws_url, english, speed=None, options={"vad": "silero"}))
        assert wer([references()["en_ls_1272-128104-0000.wav"]], [result.text]) <= 0.2


def test_stream_cli_prints_finals_and_json_lines(tiny_server):
    path = shared_file("en_goforward.wav")
    command = [
        sys.executable,
        "-m",
        "streamscribe",
        "stream",
        str(path),
        "--url",
        tiny_server.ws_url,
        "--fast",
    ]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert plain.returncode == 0, plain.stderr
    assert "forward" in plain.stdout.lower()
    as_json = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    import json

    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[0]["type"] == "session.created" and events[-1]["type"] == "session.closed"


def test_forced_cuts_in_long_speech_neither_drop_nor_repeat_words(tiny_server):
    """A 27 s monologue cut every few seconds transcribes about as well as with natural cuts."""
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    pcm = decode_file(shared_file("en_mfa_acoustic_corpus.wav"))
    reference = references()["en_mfa_acoustic_corpus.wav"]
    natural = run(stream_pcm(tiny_server.ws_url, pcm, speed=None, options={"language": "en"}))
    cut = run(
        stream_pcm(
            tiny_server.ws_url,
            pcm,
            speed=None,
            options={"language": "en", "max_utterance_duration_ms": 4000},
        )
    )
    assert any(final["reason"] == "max_duration" for final in cut.finals)
    for before, after in zip(cut.finals, cut.finals[1:], strict=False):
        assert before["end_ms"] <= after["start_ms"]
    # Words at cuts are neither lost nor transcribed twice: as many words, as accurate.
    cut_words = len(normalize(cut.text).split())
    natural_words = len(normalize(natural.text).split())
    assert abs(cut_words - natural_words) <= max(3, natural_words // 10)
    assert wer([reference], [cut.text]) <= wer([reference], [natural.text]) + 0.1


def remote_front(remote_url: str, remote_model: str):
    settings = ServerSettings(
        backend="remote", remote_url=remote_url, remote_model=remote_model, remote_api_key="sk-x"
    )
    return running_server(create_app(settings))


def test_a_streamscribe_server_serves_as_the_remote_backend_of_another(tiny_server):
    """The whole remote path on real speech: front server (VAD, sessions) -> HTTP -> a second
    StreamScribe with tiny.en. Its finals must be as good as the local path's."""
    refs = references()
    hypotheses = []
    with remote_front(tiny_server.http_url + "/v1", "tiny.en") as front:
        for name in ENGLISH:
            pcm = decode_file(shared_file(name))
            result = run(stream_pcm(front.ws_url, pcm, speed=2.0, options={"language": "en"}))
            assert result.events[-1]["type"] == "session.closed"
            finals = result.finals
            assert len(finals) == len(result.of_type("speech.started")) >= 1
            for final in finals:
                assert final["backend"] == "remote" and final["language"] == "en"
                assert final["usage"]["audio_seconds"] == pytest.approx(
                    (final["end_ms"] - final["start_ms"]) / 1000, abs=0.05
                )
            hypotheses.append(result.text)
        stats = run_get(front.http_url + "/stats")
    score = wer([refs[name] for name in ENGLISH], hypotheses)
    assert score <= 0.15, (score, hypotheses)
    assert stats["failovers"] == 0 and stats["usage"]["remote"]["requests"] >= len(ENGLISH)


def test_streamed_partials_from_a_gpt_4o_alias_on_real_speech(tiny_server):
    name = "en_ls_1272-128104-0000.wav"
    with remote_front(tiny_server.http_url + "/v1", "gpt-4o-transcribe") as front:
        pcm = decode_file(shared_file(name))
        result = run(
            stream_pcm(
                front.ws_url,
                pcm,
                speed=1.5,
                options={"language": "en", "partial_backend": "remote"},
            )
        )
    assert result.of_type("transcript.partial")
    assert wer([references()[name]], [result.text]) <= 0.25, result.text


def run_get(url: str) -> dict:
    import httpx

    return httpx.get(url).json()


def test_batched_partials_read_the_same_as_partials_run_alone(tiny_server):
    from server.core.transcription import DecodeOptions

    backend = tiny_server.app.state.scheduler.transcriber
    items = []
    for name in ENGLISH[:3]:
        audio = np.frombuffer(decode_file(shared_file(name)), "<i2").astype(np.float32) / 32768
        items.append((audio[: 16_000 * 4], DecodeOptions(language="en", prompt="Hello there.")))
    assert len({backend.batch_key(*item) for item in items}) == 1
    batched = backend.transcribe_batch(items)
    alone = [backend.transcribe(*item, final=False) for item in items]
    # int8 decoding is not bit-exact across calls ("classes and" / "classes, and"): the same
    # words after normalisation, not the same strings.
    assert wer([a.text for a in alone], [b.text for b in batched]) <= 0.05
    assert all(answer.text for answer in batched)


def test_batched_finals_read_the_same_as_finals_run_alone(tiny_server):
    """Beam search and the same prompts in one call: each final as if it had run alone. The
    client's own prompt is kept whole; carried text of the same length group batches."""
    from server.core.transcription import DecodeOptions

    backend = tiny_server.app.state.scheduler.transcriber
    carried = ["Hello there, my friend.", "Good morning to you.", "Thanks for coming by."]
    items = []
    for name, text in zip(ENGLISH[:3], carried, strict=True):
        audio = np.frombuffer(decode_file(shared_file(name)), "<i2").astype(np.float32) / 32768
        options = DecodeOptions(
            language="en", prompt=f"Glossary: Kennedy. {text}", carried_prompt_chars=len(text)
        )
        items.append((audio[: 16_000 * 6], options))
    assert len({backend.batch_key(*item, final=True) for item in items}) == 1
    batched = backend.transcribe_batch(items, final=True)
    alone = [backend.transcribe(*item, final=True) for item in items]
    # int8 decoding is not bit-exact across calls ("classes and" / "classes, and"): the same
    # words after normalisation, not the same strings.
    assert wer([a.text for a in alone], [b.text for b in batched]) <= 0.05
    assert all(answer.text for answer in batched)
    # A different glossary length, or no carried text, never shares the batch.
    other = DecodeOptions(language="en", prompt="Glossary: Kennedy, Boston, Harvard.")
    assert backend.batch_key(items[0][0], other, final=True) != backend.batch_key(
        *items[0], final=True
    )


def test_finals_that_end_in_a_pause_take_the_short_window_and_read_as_well(tiny_server):
    """Finals of whole files (2-11 s, ending in silence) on the 10 s encoder window read as well
    as on Whisper's 30 s. A final cut while the speaker talked keeps 30 s (there the
    short window lost words); the forced-cut test above covers that."""
    import dataclasses

    from server.core.transcription import DecodeOptions

    backend = tiny_server.app.state.scheduler.transcriber
    assert backend.final_window_s == 10
    cut = DecodeOptions(language="en")
    paused = dataclasses.replace(cut, ends_in_silence=True)
    audios = [
        np.frombuffer(decode_file(shared_file(name)), "<i2").astype(np.float32) / 32768
        for name in ENGLISH
    ]

    def finals(options: DecodeOptions) -> list[str]:
        return [backend.transcribe(audio, options, final=True).text for audio in audios]

    padded = finals(cut)
    short = finals(paused)  # 2.2-2.5 times cheaper: benchmarks/final_window.py
    expected = [references()[name] for name in ENGLISH]
    assert wer(expected, short) <= wer(expected, padded) + 0.03, short


def test_concurrent_sessions_share_batches_and_keep_their_own_words():
    """Four speakers at once: partials run in shared batches, and every final still matches its
    own speaker's reference. A partial waits up to 200 ms for company here (10 ms by default),
    so that four real-time speakers meet in a batch whatever the machine's timing (with 10 ms
    they once never did)."""

    with model_server("tiny.en", batch_window_ms=200) as tiny_server:
        concurrent_speakers(tiny_server)


def concurrent_speakers(tiny_server: Any) -> None:
    import asyncio

    refs = references()

    async def everyone():
        return await asyncio.gather(
            *(
                stream_pcm(
                    tiny_server.ws_url,
                    decode_file(shared_file(name)),
                    speed=1.0,
                    options={"language": "en"},
                )
                for name in ENGLISH
            )
        )

    results = run(everyone())
    hypotheses = [" ".join(final["text"] for final in result.finals) for result in results]
    assert wer([refs[name] for name in ENGLISH], hypotheses) <= 0.2
    metrics = httpx.get(tiny_server.http_url + "/metrics").text
    batches = re.search(r'^streamscribe_batch_size_count\{kind="partial"\} (\S+)', metrics, re.M)
    total = re.search(r'^streamscribe_batch_size_sum\{kind="partial"\} (\S+)', metrics, re.M)
    assert batches and total and float(total.group(1)) > float(batches.group(1)) > 0


def test_a_final_that_loops_on_the_short_window_stops_early_and_is_decoded_again():
    """ "here's some more words words words words" (the fast talk, 14.2-22.4 s) makes tiny.en
    loop on the 10 s window with beam 5. The loop stops at the final's token budget (12 a
    second of audio and 16 more), not at Whisper's 224 tokens; decoded again on a window 10 s
    longer (not Whisper's 30 s), the final reads as said, its repeated words kept."""
    from whisper_normalizer.english import EnglishTextNormalizer

    from server.backends.local import (
        LOOP_RETRY_EXTRA_S,
        TOKENS_MARGIN,
        TOKENS_PER_S_AT_MOST,
        FasterWhisperTranscriber,
    )
    from server.core.transcription import DecodeOptions

    require_model("tiny.en")
    backend = FasterWhisperTranscriber("tiny.en", compute_type="int8", num_workers=1)
    backend.load()
    pcm = np.frombuffer(decode_file(shared_file("en_mfa_acoustic_corpus.wav")), "<i2")
    clip = pcm[int(14.22 * 16_000) : int(22.40 * 16_000)].astype(np.float32) / 32768
    budget = TOKENS_MARGIN + int(TOKENS_PER_S_AT_MOST * len(clip) / 16_000)

    decoded: list[tuple[float, int, int]] = []  # (window s, max_length, tokens) of each call
    model = backend._model

    class CountingDecoder:  # the real model, each call's window and tokens counted
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def generate(self, encoded: Any, *args: Any, **kwargs: Any) -> Any:
            results = self.inner.generate(encoded, *args, **kwargs)
            window_s = encoded.shape[1] / 50  # the encoder's 50 positions a second
            tokens = len(results[0].sequences_ids[0])
            decoded.append((window_s, kwargs["max_length"], tokens))
            return results

    model.model = CountingDecoder(model.model)
    answer = backend.transcribe(clip, DecodeOptions(language="en", ends_in_silence=True))

    (first_window, first_max_length, first_tokens), *again = decoded
    assert first_window == 10
    assert first_tokens == budget <= first_max_length // 2, decoded  # the loop, cut short
    assert [window for window, _, _ in again] == [10 + LOOP_RETRY_EXTRA_S], decoded
    words = EnglishTextNormalizer()(answer.text).split()
    assert words[:6] == ["we", "are", "just", "saying", "some", "words"], answer.text
    assert 4 <= words.count("words") <= 8, answer.text  # "some words", then 3-4 said, no loop
