"""A server that dies loses no word: ``streamscribe stream`` against real servers (tiny.en)
that are killed, drained or swapped behind a proxy in the middle of real speech, compared with
an uninterrupted run of the same file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.server.cutting_proxy import CuttingProxy
from tests.support import (
    ROOT,
    TIMEOUT_S,
    missing_words,
    require_model,
    server_process,
    shared_file,
    wer,
)

SPEECH_FILE = "en_mfa_acoustic_corpus.wav"  # 27 s of read speech, several utterances
MODEL_FLAGS = ("--model", "tiny.en", "--compute-type", "int8", "--beam-size", "1")

pytestmark = [pytest.mark.model, pytest.mark.slow]


def reference() -> str:
    from tests.support import manifest

    return next(entry["text"] for entry in manifest() if entry["file"] == SPEECH_FILE)


def model_server(port: int | None = None) -> tuple[subprocess.Popen[str], int]:
    return server_process(*MODEL_FLAGS, port=port, capture=False)


Trigger = Callable[[], Awaitable[None]]


async def stream_cli(url: str, trigger: Trigger | None = None) -> list[dict[str, Any]]:
    """Run ``streamscribe stream --json`` on the file; once the second final has arrived and
    the next utterance is under way, run ``trigger`` (the fault) beside it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamscribe",
        "stream",
        str(shared_file(SPEECH_FILE)),
        "--url",
        url,
        "--json",
        "--speed",
        "2",
        "--language",
        "en",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    events: list[dict[str, Any]] = []
    fault: asyncio.Task[None] | None = None
    async for line in process.stdout:
        event = json.loads(line)
        events.append(event)
        finals = sum(e["type"] == "transcript.final" for e in events)
        if trigger and fault is None and finals >= 2 and event["type"] == "transcript.partial":
            fault = asyncio.create_task(trigger())
    _, stderr = await process.communicate()
    if fault is not None:
        await fault
    assert process.returncode == 0, stderr.decode()
    return events


def transcript(events: list[dict[str, Any]]) -> str:
    return " ".join(e["text"] for e in events if e["type"] == "transcript.final")


def assert_each_final_once(events: list[dict[str, Any]]) -> None:
    ids = [e["utterance_id"] for e in events if e["type"] == "transcript.final"]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    ends = [e["end_ms"] for e in events if e["type"] == "transcript.final"]
    assert ends == sorted(ends)  # one stream: times go on across sessions


@pytest.fixture(scope="module")
def uninterrupted() -> str:
    """The transcript of the same file on a server nothing happens to."""
    require_model("tiny.en")
    process, port = model_server()
    try:
        events = asyncio.run(stream_cli(f"ws://127.0.0.1:{port}/v1/stream"))
    finally:
        process.kill()
        process.wait()
    return transcript(events)


def assert_no_word_lost(events: list[dict[str, Any]], uninterrupted: str) -> None:
    """A lost stretch of audio shows as reference words with nothing in the transcript, a run
    of them. The fault moves where utterances are cut, and with them the words Whisper hears at
    the cut (substitutions and insertions: 4 points of WER more in one CI run, no word missing),
    so the words missing are compared, three more than the uninterrupted run allowed for
    decoding noise, and the WER is only a loose guard against garbage."""
    text = transcript(events)
    lost = missing_words(reference(), text) - missing_words(reference(), uninterrupted)
    assert lost <= 3, text
    assert wer(reference(), text) <= wer(reference(), uninterrupted) + 0.08, text


async def wait_exit(process: subprocess.Popen[str]) -> None:
    await asyncio.to_thread(process.wait, TIMEOUT_S)


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_a_killed_or_drained_server_restarted_on_its_port_loses_no_word(uninterrupted, how):
    process, port = model_server()
    replacement: list[subprocess.Popen[str]] = []

    async def fault() -> None:
        process.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        await wait_exit(process)
        replacement.append((await asyncio.to_thread(model_server, port))[0])

    try:
        events = asyncio.run(stream_cli(f"ws://127.0.0.1:{port}/v1/stream", fault))
    finally:
        for server in [process, *replacement]:
            server.kill()
            server.wait()
    assert replacement, "the fault never happened"
    assert any(e["type"] == "session.created" and e.get("continues") for e in events)
    assert_each_final_once(events)
    assert_no_word_lost(events, uninterrupted)


def test_a_switch_to_another_server_behind_a_proxy_loses_no_word(uninterrupted):
    first, first_port = model_server()
    second, second_port = model_server()

    async def scenario() -> list[dict[str, Any]]:
        async with CuttingProxy(first_port) as proxy:

            async def fault() -> None:
                proxy.target_port = second_port  # the balancer's next pick
                first.kill()
                await wait_exit(first)

            return await stream_cli(proxy.ws_url, fault)

    try:
        events = asyncio.run(scenario())
    finally:
        for server in (first, second):
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            server.wait()
    assert any(e["type"] == "session.created" and e.get("continues") for e in events)
    assert_each_final_once(events)
    assert_no_word_lost(events, uninterrupted)
