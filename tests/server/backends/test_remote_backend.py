"""The remote backend against a real misbehaving HTTP server on loopback: what it sends, how
it reads answers, retries, the circuit breaker and failover to a local model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time

import numpy as np
import pytest

from server.backends.failover import FailoverTranscriber
from server.backends.fake import ScriptedTranscriber
from server.backends.remote import RemoteTranscriber
from server.core.errors import RemoteError, UsageError
from server.core.transcription import DecodeOptions
from server.policy.resilience import Backoff, CircuitBreaker, CircuitState
from tests.support import run

SECRET = "sk-test-0123456789abcdefSECRET"
AUDIO = np.zeros(16_000, dtype=np.float32)  # one second
OPTIONS = DecodeOptions(language="en", prompt="Earlier words.")


@contextlib.contextmanager
def refused_url():
    """A loopback port that refuses connections: bound, never listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


def backend(url: str, model: str = "whisper-1", **overrides) -> RemoteTranscriber:
    settings = dict(
        model=model,
        api_key=SECRET,
        timeout_s=2.0,
        deadline_s=5.0,
        max_retries=3,
        backoff=Backoff(base_s=0.05, max_s=0.2),
        breaker=CircuitBreaker(failure_threshold=3, cooldown_s=60),
        rng=random.Random(0),
    )
    settings.update(overrides)
    return RemoteTranscriber(url, **settings)


async def transcribe(transcriber, audio=AUDIO, options=OPTIONS, **kwargs):
    await transcriber.start()
    try:
        return await transcriber.transcribe(audio, options, **kwargs)
    finally:
        await transcriber.close()


def test_whisper_1_request_and_verbose_json_answer(fresh):
    answer = run(transcribe(backend(fresh.url)))
    (sent,) = fresh.requests
    assert sent.authorization == f"Bearer {SECRET}"
    assert sent.fields["model"] == ["whisper-1"]
    assert sent.fields["response_format"] == ["verbose_json"]
    assert sent.fields["language"] == ["en"] and sent.fields["prompt"] == ["Earlier words."]
    assert sent.fields["temperature"] == ["0"]
    assert sent.audio_s == pytest.approx(1.0)
    assert answer.text == "remote words" and answer.backend == "remote"
    assert answer.language == "en"  # "english" in the answer, mapped back to the code
    assert answer.segments[0].avg_logprob == pytest.approx(-0.2)
    assert [word.word for word in answer.segments[0].words] == ["remote", "words"]
    assert answer.usage.audio_seconds == pytest.approx(1.0)


def test_gpt_4o_models_get_json_and_report_tokens(fresh):
    answer = run(transcribe(backend(fresh.url, model="gpt-4o-transcribe")))
    assert fresh.requests[0].fields["response_format"] == ["json"]
    assert answer.text == "remote words"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (50, 2)


def test_translation_goes_to_the_translations_endpoint_without_language(fresh):
    run(transcribe(backend(fresh.url), options=DecodeOptions(language="de", task="translate")))
    assert "language" not in fresh.requests[0].fields


def test_429_is_retried_after_retry_after(fresh):
    fresh.set_schedule(["429:0.4"])
    started = time.monotonic()
    answer = run(transcribe(backend(fresh.url)))
    assert time.monotonic() - started >= 0.4
    assert fresh.faults() == ["429:0.4", "ok"] and answer.text == "remote words"


@pytest.mark.parametrize("faults", [["500", "503"], ["garbage"], ["slow:3"]])
def test_server_errors_garbage_and_timeouts_are_retried(fresh, faults):
    fresh.set_schedule(faults)
    answer = run(transcribe(backend(fresh.url, timeout_s=1.0)))
    assert fresh.faults() == [*faults, "ok"] and answer.text == "remote words"


@pytest.mark.parametrize("fault", ["400", "401", "404"])
def test_the_callers_errors_are_not_retried_and_never_show_the_key(fresh, fault):
    fresh.set_schedule([fault])
    transcriber = backend(fresh.url)
    with pytest.raises(RemoteError) as caught:
        run(transcribe(transcriber))
    assert fresh.faults() == [fault]
    assert SECRET not in str(caught.value) and "sk-abc" not in str(caught.value)
    # A bad key or model is a configuration problem: stop sending until the cooldown.
    tripped = fault in ("401", "404")
    assert (transcriber.breaker.state is CircuitState.OPEN) == tripped


def test_retries_stop_at_the_retry_budget(fresh):
    fresh.set_schedule([], default="500")
    with pytest.raises(RemoteError, match="500"):
        run(
            transcribe(
                backend(fresh.url, max_retries=2, breaker=CircuitBreaker(failure_threshold=10))
            )
        )
    assert len(fresh.requests) == 3


def test_retries_stop_at_the_deadline(fresh):
    fresh.set_schedule([], default="429:0.5")
    started = time.monotonic()
    with pytest.raises(RemoteError, match="429"):
        run(transcribe(backend(fresh.url, deadline_s=1.2, max_retries=10)))
    assert time.monotonic() - started < 1.2
    assert 1 <= len(fresh.requests) <= 3


def test_a_partial_is_tried_once_and_marked_as_a_partial(fresh):
    fresh.set_schedule(["500"])
    transcriber = backend(fresh.url)
    with pytest.raises(RemoteError):
        run(transcribe(transcriber, final=False))
    assert len(fresh.requests) == 1 and fresh.requests[0].priority == "partial"
    # Partials are shed first under load; their failures leave the circuit to the finals.
    assert transcriber.breaker.consecutive_failures == 0
    run(transcribe(transcriber))
    assert fresh.requests[-1].priority is None


def test_refused_connections_are_retried_then_reported():
    with refused_url() as url:
        transcriber = backend(url, max_retries=2, breaker=CircuitBreaker(failure_threshold=10))
        with pytest.raises(RemoteError, match="refused"):
            run(transcribe(transcriber))
        assert transcriber.breaker.consecutive_failures == 3


def test_the_circuit_opens_fails_fast_then_probes_and_closes(fresh):
    async def scenario():
        breaker = CircuitBreaker(failure_threshold=2, cooldown_s=0.5)
        transcriber = backend(fresh.url, breaker=breaker, max_retries=0)
        await transcriber.start()
        fresh.set_schedule(["500", "500"])
        for _ in range(2):
            with pytest.raises(RemoteError):
                await transcriber.transcribe(AUDIO, OPTIONS)
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(RemoteError, match="circuit open"):
            await transcriber.transcribe(AUDIO, OPTIONS)
        assert len(fresh.requests) == 2  # the open circuit sent nothing
        await asyncio.sleep(0.6)
        answer = await transcriber.transcribe(AUDIO, OPTIONS)
        await transcriber.close()
        return answer, breaker.state

    answer, state = run(scenario())
    assert answer.text == "remote words" and state is CircuitState.CLOSED


def test_streamed_partials_report_each_delta_as_it_arrives(fresh):
    fresh.text = "one two three"
    pieces: list[str] = []
    try:
        answer = run(
            transcribe(
                backend(fresh.url, model="gpt-4o-transcribe"),
                final=False,
                on_segment=lambda segment: pieces.append(segment.text),
            )
        )
    finally:
        fresh.text = "remote words"
    assert fresh.requests[0].fields["stream"] == ["true"]
    assert pieces == ["one", " two", " three"]
    assert answer.text == "one two three" and answer.usage.output_tokens == 3


def test_whisper_1_never_asks_for_a_stream(fresh):
    run(transcribe(backend(fresh.url), final=False, on_segment=lambda segment: None))
    assert "stream" not in fresh.requests[0].fields


@pytest.mark.parametrize(
    ("status", "model", "message"),
    [(401, "whisper-1", "refused the API key"), (200, "no-such-model", "does not serve")],
)
def test_start_up_check_refuses_a_bad_key_or_unknown_model(fresh, status, model, message):
    fresh.models_status = status

    async def check():
        transcriber = backend(fresh.url, model=model)
        await transcriber.start()
        try:
            await transcriber.check()
        finally:
            await transcriber.close()

    with pytest.raises(UsageError, match=message) as caught:
        run(check())
    assert SECRET not in str(caught.value)


def test_start_up_check_tolerates_an_unreachable_remote(caplog):
    async def check(url):
        transcriber = backend(url)
        await transcriber.start()
        await transcriber.check()
        await transcriber.close()

    with refused_url() as url, caplog.at_level(logging.WARNING):
        run(check(url))
    assert "not reachable" in caplog.text and SECRET not in caplog.text


# ---------------------------------------------------------------------- failover


def failover(url: str, local=None, **overrides) -> FailoverTranscriber:
    local = local if local is not None else ScriptedTranscriber(["local words"])
    return FailoverTranscriber(backend(url, **overrides), local, local_workers=1)


def test_a_failed_final_is_answered_by_the_local_model(fresh):
    fresh.set_schedule([], default="500")
    answer = run(transcribe(failover(fresh.url, max_retries=1)))
    assert answer.backend == "fake" and answer.text == "local words"
    assert "500" in answer.failover_reason


def test_partials_come_from_the_local_model_unless_the_session_asks_for_the_remote(fresh):
    transcriber = failover(fresh.url)
    local = run(transcribe(transcriber, final=False))
    assert local.backend == "fake" and not fresh.requests
    remote = run(
        transcribe(transcriber, options=DecodeOptions(partial_backend="remote"), final=False)
    )
    assert remote.backend == "remote" and len(fresh.requests) == 1


def test_failover_is_immediate_while_the_circuit_is_open_and_ends_when_it_recovers(fresh):
    async def scenario():
        transcriber = failover(
            fresh.url, breaker=CircuitBreaker(failure_threshold=1, cooldown_s=0.5), max_retries=0
        )
        await transcriber.start()
        fresh.set_schedule(["503"])
        backends = [(await transcriber.transcribe(AUDIO, OPTIONS)).backend]
        started = time.monotonic()
        backends.append((await transcriber.transcribe(AUDIO, OPTIONS)).backend)
        fast_s = time.monotonic() - started
        await asyncio.sleep(0.6)
        backends.append((await transcriber.transcribe(AUDIO, OPTIONS)).backend)
        await transcriber.close()
        return backends, fast_s, transcriber.failovers

    backends, fast_s, failovers = run(scenario())
    assert backends == ["fake", "fake", "remote"] and failovers == 2
    assert fast_s < 0.5 and len(fresh.requests) == 2  # the open circuit sent nothing


def test_one_slow_remote_call_does_not_hold_up_another(fresh):
    fresh.set_schedule(["slow:1.5"])

    async def scenario():
        transcriber = backend(fresh.url)
        await transcriber.start()
        slow = asyncio.create_task(transcriber.transcribe(AUDIO, OPTIONS))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await transcriber.transcribe(AUDIO, OPTIONS)
        quick_s = time.monotonic() - started
        await slow
        await transcriber.close()
        return quick_s

    assert run(scenario()) < 1.0
