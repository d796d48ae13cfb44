"""Test helpers: real servers on loopback, the shared audio, skips that CI turns into failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_AUDIO = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
# Every wait in the tests derives from this, so slow machines can scale it.
TIMEOUT_S = 30.0 * float(os.environ.get("STREAMSCRIBE_TEST_TIMEOUT_SCALE", "1"))


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; fail instead where CI demands everything."""
    if condition:
        return
    if os.environ.get("STREAMSCRIBE_REQUIRE_ALL") == "1":
        pytest.fail(f"required for CI but missing: {reason}")
    pytest.skip(reason)


def manifest() -> list[dict[str, Any]]:
    path = SHARED_AUDIO / "manifest.jsonl"
    require(path.is_file(), f"shared audio not found at {SHARED_AUDIO}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shared_file(name: str) -> Path:
    path = SHARED_AUDIO / name
    require(path.is_file(), f"shared audio file {name} not found in {SHARED_AUDIO}")
    return path


# English files with clean references, each at least two seconds of speech.
ENGLISH_FILES = (
    "en_ls_1272-128104-0000.wav",
    "en_librivox_sense_0880.wav",
    "en_goforward.wav",
    "en_ls_61-70968-0000.flac",
)


def spoken(
    names: tuple[str, ...] | list[str], rate_hz: int = 16_000, pause_s: float = 1.5
) -> bytes:
    """The shared files one after another, each followed by a pause, as PCM16 at ``rate_hz``."""
    import numpy as np

    from client.sources import decode_file

    pause = np.zeros(int(rate_hz * pause_s), dtype="<i2")
    parts = []
    for name in names:
        parts += [np.frombuffer(decode_file(shared_file(name), rate_hz), "<i2"), pause]
    return bytes(np.concatenate(parts).tobytes())


def references(names: tuple[str, ...] | list[str]) -> str:
    """The files' reference transcripts, joined."""
    texts = {entry["file"]: entry["text"] for entry in manifest()}
    return " ".join(texts[name] for name in names)


def fake_settings(**overrides: Any) -> Any:
    """Settings of a server on the scripted backend (no model), as most tests run it."""
    from server.settings import ServerSettings

    return ServerSettings(**{"backend": "fake", "model": "fake-model", **overrides})


async def read_until(websocket: Any, kind: str) -> list[dict[str, Any]]:
    """The JSON events of ``websocket`` up to and including the first of type ``kind``."""
    events = []
    async for raw in websocket:
        events.append(json.loads(raw))
        if events[-1]["type"] == kind:
            break
    return events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def normalized_pairs(
    reference: str | list[str], hypothesis: str | list[str]
) -> tuple[list[str], list[str]]:
    """References and hypotheses after Whisper's English normalisation, bracketed noise tags
    dropped from the references: int8 decoding is not bit-exact, so tests compare normalised
    words, never strings."""
    import re

    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    references = [reference] if isinstance(reference, str) else reference
    hypotheses = [hypothesis] if isinstance(hypothesis, str) else hypothesis
    strip = [re.sub(r"\[[^\]]*\]|<[^>]*>", " ", text) for text in references]
    return [normalize(t) for t in strip], [normalize(t) for t in hypotheses]


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """Word error rate over every (reference, hypothesis) pair at once for lists."""
    import jiwer

    return float(jiwer.wer(*normalized_pairs(reference, hypothesis)))


def missing_words(reference: str | list[str], hypothesis: str | list[str]) -> int:
    """Reference words the hypothesis has nothing for (the alignment's deletions): what a lost
    stretch of audio shows as. An utterance cut at another moment changes words (substitutions,
    insertions) without losing any."""
    import jiwer

    return int(jiwer.process_words(*normalized_pairs(reference, hypothesis)).deletions)


def require_model(name: str) -> None:
    from server.backends.models import resolve_model
    from server.core.errors import ModelNotFound

    try:
        import faster_whisper  # noqa: F401

        resolve_model(name)
    except (ImportError, ModelNotFound) as exc:
        require(False, f"model {name} unavailable: {exc}")


@dataclass
class RunningServer:
    host: str
    port: int
    app: Any

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/stream"


@contextlib.contextmanager
def running_server(app: Any, *, wait_ready: bool = True) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port, in a thread of its own."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, "server start")
        if wait_ready:
            _wait(
                lambda: app.state.scheduler.ready.is_set() or app.state.scheduler.load_error,
                "model load",
            )
        yield RunningServer("127.0.0.1", port, app)
    finally:
        server.should_exit = True
        thread.join(TIMEOUT_S)
        sock.close()


def _wait(condition: Any, what: str) -> None:
    import time

    deadline = time.monotonic() + TIMEOUT_S * 4
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT_S * 4))


def server_process(
    *flags: str, env: dict[str, str] | None = None, port: int | None = None, capture: bool = True
) -> tuple[Any, int]:
    """``streamscribe serve`` as its own process on ``port`` (a free one by default), once
    ready. With ``capture`` its output is piped (read it with ``communicate()`` after it
    stops); without, it is dropped."""
    import subprocess
    import sys
    import time

    import httpx

    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamscribe", "serve", "--port", str(port), *flags],
        cwd=ROOT,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + TIMEOUT_S * 2
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.1)  # polling the readiness probe, not waiting for an event we lack
    process.kill()
    raise TimeoutError(f"streamscribe serve did not become ready: {process.communicate()[1]}")
