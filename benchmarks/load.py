"""How many real-time sessions one machine serves: StreamScribe beside WhisperLive and
WhisperLiveKit.

N concurrent sessions each stream real English speech from ../shared/audio (files joined with
1-2 s pauses, a different rotation per session, each starting at a random moment within
``--stagger-s``) at real-time pace in ``--chunk-ms`` messages (20 ms, as voice frameworks and
browser pages send them). N is stepped up until a session is not served. Per N: end of speech
to final p50/p95 (pooled, and the worst session's own p95), first partial after the onset,
WER of the finals, sessions refused and served, the server's CPU use and peak RSS, and the
CPU the load client itself takes on the same machine.

Everything is measured the same way for every server, from the audio itself: each file's
speech onset and end are found in the file (the first and last frame webrtcvad calls voiced),
so "end of speech to final" runs from the moment the audio at the end of a file's speech was
sent to the moment the final (or completed segment) covering that point arrived, and "first
partial" from the moment its onset was sent to the first text of the utterance covering it.
StreamScribe waits for ``silence_duration_ms`` (500 ms) of silence before it can call an
utterance over, so its budget is 1.5 s after that window: 2.0 s end of speech to final; the
same 2.0 s is WhisperLive's budget. A session is served when its own p95 is within the budget;
one the server refused is not served. StreamScribe's own ``latency_ms`` (after the silence
window) is reported beside it.

``--burst`` starts every session at once with the same audio, so their utterances end together.

``--record`` appends the figures to RESULTS.md and writes the JSON behind them to
benchmarks/results/load/; ``--plot-from FILE`` draws the figure again from such a JSON.

    python benchmarks/load.py --server streamscribe --steps 1,2,4,6,8 --session-s 60 --record
    bash benchmarks/whisperlive_setup.sh   # WhisperLive in benchmarks/.venv-whisperlive
    python benchmarks/load.py --server whisperlive --steps 1,2,3,4 --session-s 60 --record
    bash benchmarks/whisperlivekit_setup.sh   # WhisperLiveKit in benchmarks/.venv-whisperlivekit
    python benchmarks/load.py --server whisperlivekit --steps 1,2 --session-s 60 --record
    python benchmarks/load.py --soak-s 1800 --record   # one long stream: RSS and lag over time
    # what an audio message costs the server without a model (server_cpu_us_per_message):
    python benchmarks/load.py --steps 10,20,40 --server-arg=--backend --server-arg=fake --record
    python benchmarks/load.py --plot-from benchmarks/results/load/<file>.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
FIGURES = ROOT / "benchmarks" / "figures"
LOAD_RESULTS = ROOT / "benchmarks" / "results" / "load"
WL_PYTHON = ROOT / "benchmarks" / ".venv-whisperlive" / "bin" / "python"
WLK_SERVER = ROOT / "benchmarks" / ".venv-whisperlivekit" / "bin" / "whisperlivekit-server"
RATE_HZ = 16_000
MATCH_SLACK_S = 0.3  # how far a server's idea of a speech edge may be from the file's
BUDGET_S = 2.0  # end of speech to final; StreamScribe: 1.5 s after its 500 ms silence window
SILENCE_WINDOW_S = 0.5


@dataclass
class Clip:
    audio: np.ndarray  # float32, 16 kHz
    reference: str
    # (speech onset, speech end) in seconds of this audio, found in the audio itself
    pieces: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Heard:
    """A final (or completed segment), or an utterance's first partial, as it arrived."""

    arrived: float  # monotonic
    start_s: float  # stream time the server gives it
    end_s: float
    text: str = ""


@dataclass
class SessionResult:
    finals: list[Heard] = field(default_factory=list)
    first_partials: list[Heard] = field(default_factory=list)
    server_latency_ms: list[float] = field(default_factory=list)
    degraded: int = 0
    refused: str = ""
    refusal_rule: str = ""  # StreamScribe's admission rule that refused it, from its message
    reference: str = ""
    pieces: list[tuple[float, float]] = field(default_factory=list)
    sent_at_zero: float = 0.0  # when stream time 0 was sent
    messages: int = 0  # audio messages sent

    def texts(self) -> list[str]:
        return [heard.text for heard in self.finals]

    def end_to_final_s(self) -> list[float]:
        """Per piece of speech: from the moment its end was sent to the final covering it (a
        server's VAD may call the last ``MATCH_SLACK_S`` of a file's speech silence)."""
        delays = []
        for _, end in self.pieces:
            covering = [
                f for f in self.finals if f.start_s <= end and f.end_s >= end - MATCH_SLACK_S
            ]
            if covering:
                delays.append(covering[0].arrived - (self.sent_at_zero + end))
        return delays

    def onset_to_first_partial_s(self) -> list[float]:
        delays = []
        for onset, _ in self.pieces:
            covering = [
                p
                for p in self.first_partials
                if p.start_s <= onset + MATCH_SLACK_S and p.end_s >= onset
            ]
            if covering:
                delays.append(covering[0].arrived - (self.sent_at_zero + onset))
        return delays


def speech_span_s(audio: np.ndarray) -> tuple[float, float]:
    """The first and last voiced frame of a file, as webrtcvad hears it."""
    from vad.detectors import make_detector

    detector = make_detector("webrtc")
    size = detector.frame_samples
    voiced = [
        start
        for start in range(0, len(audio) - size + 1, size)
        if detector.speech_probability(audio[start : start + size]) >= detector.threshold
    ]
    if not voiced:
        return 0.0, len(audio) / RATE_HZ
    return voiced[0] / RATE_HZ, (voiced[-1] + size) / RATE_HZ


def english_clips() -> list[Clip]:
    from client.sources import decode_file

    rows = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    clips = []
    for row in rows:
        if row["language"] != "en" or row["duration_s"] > 30:
            continue
        audio = np.frombuffer(decode_file(SHARED / row["file"]), "<i2").astype(np.float32) / 32768
        clips.append(Clip(audio, row["text"], [speech_span_s(audio)]))
    return clips


def build_stream(clips: list[Clip], rotation: int, seconds: float, seed: int) -> Clip:
    """Whole files from ``rotation`` on, joined with 1-2 s pauses, until ``seconds`` of audio."""
    rng = random.Random(seed)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * RATE_HZ), np.float32)]
    texts: list[str] = []
    pieces: list[tuple[float, float]] = []
    total = 0.5
    index = rotation
    while total < seconds:
        clip = clips[index % len(clips)]
        pause = np.zeros(int(rng.uniform(1.0, 2.0) * RATE_HZ), np.float32)
        parts += [clip.audio, pause]
        texts.append(clip.reference)
        pieces += [(total + onset, total + end) for onset, end in clip.pieces]
        total += (len(clip.audio) + len(pause)) / RATE_HZ
        index += 1
    return Clip(np.concatenate(parts), " ".join(texts), pieces)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------- servers


def start_streamscribe(port: int, model: str, extra: list[str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "streamscribe", "serve", "--model", model, "--compute-type",
        "int8", "--port", str(port), "--log-level", "warning", "--idle-timeout-s", "0", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 180
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("streamscribe did not get ready")


def start_whisperlive(port: int, model: str) -> subprocess.Popen[bytes]:
    if not WL_PYTHON.exists():
        raise SystemExit("WhisperLive is not installed: bash benchmarks/whisperlive_setup.sh")
    from server.backends.models import resolve_model

    model_dir = resolve_model(model)
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from whisper_live.server import TranscriptionServer\n"
        f"TranscriptionServer().run('127.0.0.1', {port}, backend='faster_whisper', "
        f"faster_whisper_custom_model_path={str(model_dir)!r}, single_model=True, "
        "max_clients=64, max_connection_time=7200)\n"
    )
    process = subprocess.Popen([str(WL_PYTHON), "-c", code], cwd=ROOT / "benchmarks")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.5)
    process.kill()
    raise SystemExit("WhisperLive did not start")


def start_whisperlivekit(port: int, model: str, policy: str) -> subprocess.Popen[bytes]:
    """WhisperLiveKit's server on its faster-whisper backend, raw PCM in, with ``policy``
    (``localagreement`` or ``simulstreaming``), on the same model directory as ours."""
    if not WLK_SERVER.exists():
        raise SystemExit("WhisperLiveKit is not installed: bash benchmarks/whisperlivekit_setup.sh")
    from server.backends.models import resolve_model

    command = [
        str(WLK_SERVER), "--host", "127.0.0.1", "--port", str(port), "--model_dir",
        str(resolve_model(model)), "--backend", "faster-whisper", "--backend-policy", policy,
        "--pcm-input", "--lan", "en",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT / "benchmarks")
    deadline = time.monotonic() + 300
    import httpx

    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        if process.poll() is not None:
            raise SystemExit("WhisperLiveKit exited while starting")
        time.sleep(0.5)
    process.kill()
    raise SystemExit("WhisperLiveKit did not start")


class ProcessWatch:
    """CPU seconds and peak RSS of a server process (and its children) from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu_at_start = self.cpu_s()

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


# ---------------------------------------------------------------------- clients


class Pacer:
    """Sends audio at real-time pace in ``chunk_s`` messages and remembers when stream time 0
    was sent (the audio at stream time t was sent at ``started + t``, within a message)."""

    def __init__(self, chunk_s: float) -> None:
        self.chunk_s = chunk_s
        self.started = 0.0
        self.messages = 0

    def sent_at(self, stream_s: float) -> float:
        return self.started + stream_s


async def pace(pacer: Pacer, audio: np.ndarray, send: Any) -> None:
    step = int(pacer.chunk_s * RATE_HZ)
    pacer.started = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), step)):
        wait = pacer.started + index * pacer.chunk_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await send(audio[offset : offset + step])
        pacer.messages += 1


ADMISSION_RULES = ("admission_burst", "max_final_load", "final latency p95", "finals waiting")


def admission_rule(message: str) -> str:
    """Which of StreamScribe's admission rules a refusal names (see server/policy/load.py)."""
    return next((rule for rule in ADMISSION_RULES if rule in message), "other")


async def streamscribe_session(
    url: str, stream: Clip, delay_s: float, chunk_s: float
) -> SessionResult:
    await asyncio.sleep(delay_s)
    result = SessionResult(reference=stream.reference, pieces=stream.pieces)
    pacer = Pacer(chunk_s)
    async with websockets.connect(url + "?language=en", max_size=None) as ws:
        first = json.loads(await ws.recv())
        if first["type"] == "error":
            result.refused = first["code"]
            result.refusal_rule = admission_rule(first.get("message", ""))
            return result

        async def send(chunk: np.ndarray) -> None:
            await ws.send((np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())

        async def sender() -> None:
            await pace(pacer, stream.audio, send)
            await ws.send(json.dumps({"type": "session.close"}))

        task = asyncio.create_task(sender())
        partial_seen: set[int] = set()
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 60)
            except TimeoutError:
                print(f"no event for 60 s (sender done: {task.done()})", file=sys.stderr)
                if task.done() and task.exception():
                    print(f"sender failed: {task.exception()!r}", file=sys.stderr)
                result.refused = "stalled"
                break
            event = json.loads(raw)
            kind = event["type"]
            now = time.monotonic()
            if kind == "transcript.partial" and event["utterance_id"] not in partial_seen:
                partial_seen.add(event["utterance_id"])
                span = (event["start_ms"] / 1000, event["end_ms"] / 1000)
                result.first_partials.append(Heard(now, *span))
            elif kind == "transcript.final":
                span = (event["start_ms"] / 1000, event["end_ms"] / 1000)
                result.finals.append(Heard(now, *span, event["text"]))
                if "latency_ms" in event:
                    result.server_latency_ms.append(event["latency_ms"])
            elif kind == "session.degraded":
                result.degraded += 1
            elif kind == "session.closed":
                break
        if not task.done():
            task.cancel()
    result.sent_at_zero = pacer.started
    result.messages = pacer.messages
    return result


async def whisperlive_session(
    url: str, stream: Clip, delay_s: float, chunk_s: float
) -> SessionResult:
    """WhisperLive's own protocol: a JSON hello, float32 audio, b"END_OF_AUDIO". A segment is
    final when it arrives with ``completed: true``; the first text of a segment is its partial."""
    await asyncio.sleep(delay_s)
    result = SessionResult(reference=stream.reference, pieces=stream.pieces)
    pacer = Pacer(chunk_s)
    uid = str(uuid.uuid4())
    async with websockets.connect(url, max_size=None) as ws:
        hello = {"uid": uid, "language": "en", "task": "transcribe", "model": "tiny.en",
                 "use_vad": True, "send_last_n_segments": 10}  # fmt: skip
        await ws.send(json.dumps(hello))
        ready = json.loads(await ws.recv())
        if ready.get("status") == "WAIT" or ready.get("message") != "SERVER_READY":
            result.refused = str(ready)
            return result

        async def send(chunk: np.ndarray) -> None:
            await ws.send(chunk.astype(np.float32).tobytes())

        done = asyncio.Event()

        covered_s = 0.0  # how far into the stream its segments reach
        audio_s = len(stream.audio) / RATE_HZ

        async def sender() -> None:
            await pace(pacer, stream.audio, send)
            # It has no end-of-stream flush: give it until its segments reach the last speech
            # (the stream ends in a 1-2 s pause), or at most 15 s, before saying goodbye.
            deadline = time.monotonic() + 15
            while covered_s < audio_s - 2.5 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            await ws.send(b"END_OF_AUDIO")
            done.set()

        task = asyncio.create_task(sender())
        completed: dict[str, str] = {}
        last_open = ""
        seen_partial_starts: set[str] = set()
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                if done.is_set():
                    break
                continue
            except websockets.ConnectionClosed:
                break
            message = json.loads(raw)
            now = time.monotonic()
            for segment in message.get("segments", []):
                span = (float(segment["start"]), float(segment["end"]))
                covered_s = max(covered_s, span[1])
                start = f"{span[0]:.3f}"
                if segment.get("completed"):
                    if start not in completed:
                        completed[start] = segment["text"]
                        result.finals.append(Heard(now, *span, segment["text"]))
                else:
                    last_open = segment["text"]
                    if start not in seen_partial_starts:
                        seen_partial_starts.add(start)
                        result.first_partials.append(Heard(now, *span))
        await task
        if last_open and (not completed or list(completed.values())[-1] != last_open):
            # Its client shows the open segment at the end: its text counts, not its time.
            result.finals.append(Heard(float("inf"), -1.0, -1.0, last_open))
    result.sent_at_zero = pacer.started
    result.messages = pacer.messages
    return result


def _clock_s(text: str) -> float:
    """WhisperLiveKit's "H:MM:SS.cc" in seconds."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


async def whisperlivekit_session(
    url: str, stream: Clip, delay_s: float, chunk_s: float
) -> SessionResult:
    """WhisperLiveKit's own protocol: 16 kHz s16le bytes, an empty message to stop, and its
    whole transcript state after each step: ``lines`` (committed text, with times) and
    ``buffer_transcription`` (the uncommitted hypothesis). Committed text is its final: the
    moment a line's end first reaches past a point of the stream is when that point was
    finalised. The first partial of an utterance is the first text (committed or not) after
    the last committed line, seen while its audio was being sent."""
    await asyncio.sleep(delay_s)
    result = SessionResult(reference=stream.reference, pieces=stream.pieces)
    pacer = Pacer(chunk_s)
    async with websockets.connect(url, max_size=None) as ws:
        config = json.loads(await ws.recv())
        if config.get("type") != "config":
            result.refused = str(config)
            return result

        async def send(chunk: np.ndarray) -> None:
            await ws.send((np.clip(chunk, -1, 1) * 32767).astype("<i2").tobytes())

        async def sender() -> None:
            await pace(pacer, stream.audio, send)
            await ws.send(b"")

        task = asyncio.create_task(sender())
        committed_end = 0.0
        lines: list[dict[str, Any]] = []
        showing = False
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), 60)
            except (TimeoutError, websockets.ConnectionClosed):
                result.refused = result.refused or ("stalled" if not task.done() else "")
                break
            message = json.loads(raw)
            if message.get("type") == "ready_to_stop":
                break
            if message.get("error"):
                result.refused = str(message["error"])
                break
            now = time.monotonic()
            lines = [line for line in message.get("lines", []) if line.get("text")]
            ends = [_clock_s(line["end"]) for line in lines]
            if ends and max(ends) > committed_end:
                start = min(_clock_s(line["start"]) for line in lines)
                result.finals.append(Heard(now, start, max(ends)))
                committed_end = max(ends)
                showing = False
            has_text = bool(message.get("buffer_transcription", "").strip())
            if has_text and not showing and pacer.started:
                sent_s = now - pacer.started
                result.first_partials.append(Heard(now, committed_end, sent_s))
            showing = showing or has_text
        if not task.done():
            task.cancel()
        # Its transcript is the committed lines as they stand at the end.
        result.finals += [Heard(float("inf"), -1.0, -1.0, line["text"]) for line in lines]
    result.sent_at_zero = pacer.started
    result.messages = pacer.messages
    return result


# ---------------------------------------------------------------------- figures


def wer(results: list[SessionResult]) -> float | None:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    references, hypotheses = [], []
    for result in results:
        if result.refused:
            continue
        references.append(normalize(result.reference))
        hypotheses.append(normalize(" ".join(result.texts())))
    return float(jiwer.wer(references, hypotheses)) if references else None


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(value for value in values if value == value)  # drop NaN
    if not values:
        return None
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def summarize(n: int, results: list[SessionResult], watch: ProcessWatch, wall_s: float) -> dict:
    admitted = [r for r in results if not r.refused]
    latencies = [latency for r in admitted for latency in r.end_to_final_s()]
    own_p95 = [percentile(r.end_to_final_s(), 95) for r in admitted]
    served = sum(p95 is not None and p95 <= BUDGET_S for p95 in own_p95)
    server_ms = [ms for r in results for ms in r.server_latency_ms]
    first = [s for r in admitted for s in r.onset_to_first_partial_s()]
    cpu_s = watch.cpu_s() - watch.cpu_at_start
    messages = sum(r.messages for r in results)
    worst = max((p95 for p95 in own_p95 if p95 is not None), default=None)
    return {
        "sessions": n,
        "refused": n - len(admitted),
        "served": served,
        "finals": sum(len(r.finals) for r in results),
        "speech_ends_matched": len(latencies),
        "speech_ends": sum(len(r.pieces) for r in admitted),
        # Onsets no first partial covers are left out of the first-partial figures (a server
        # whose utterance began before the file's speech, on noise, or after its first words).
        "onsets_matched": len(first),
        "final_p50_s": _round(percentile(latencies, 50)),
        "final_p95_s": _round(percentile(latencies, 95)),
        "worst_session_p95_s": _round(worst),
        "raw": [
            {
                "end_to_final_s": [round(v, 3) for v in r.end_to_final_s()],
                "onset_to_first_partial_s": [round(v, 3) for v in r.onset_to_first_partial_s()],
                "refused": r.refused,
            }
            for r in results
        ],
        "refused_by": dict(Counter(r.refusal_rule for r in results if r.refusal_rule)),
        "server_latency_p50_ms": _round(percentile(server_ms, 50), 0),
        "server_latency_p95_ms": _round(percentile(server_ms, 95), 0),
        "first_partial_p50_s": _round(percentile(first, 50)),
        "first_partial_p95_s": _round(percentile(first, 95)),
        "wer": _round(wer(results), 4),
        "cpu_cores_used": round(cpu_s / wall_s, 2),
        "server_cpu_s": round(cpu_s, 2),
        "audio_messages": messages,
        # all the server's work per message: with --backend fake, what a message costs
        # without the model (websocket, VAD, session, scheduler)
        "server_cpu_us_per_message": round(cpu_s / messages * 1e6) if messages else None,
        "rss_mb": round(watch.rss_mb()),
        "degraded_notices": sum(r.degraded for r in results),
        "holds": served == n,
    }


def batch_counts(port: int) -> dict[str, tuple[float, float]]:
    """StreamScribe's ``streamscribe_batch_size`` per kind: (batches run, requests in them)."""
    import re

    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    counts: dict[str, tuple[float, float]] = {}
    for kind in ("partial", "final"):
        found = [
            re.search(rf'^streamscribe_batch_size_{part}{{kind="{kind}"}} (\S+)', text, re.M)
            for part in ("count", "sum")
        ]
        counts[kind] = tuple(float(m.group(1)) if m else 0.0 for m in found)  # type: ignore[assignment]
    return counts


def batch_figures(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Per kind: how many requests ran in shared batches during a step, and the mean size."""
    figures = {}
    for kind in ("partial", "final"):
        batches = after[kind][0] - before[kind][0]
        requests = after[kind][1] - before[kind][1]
        figures[f"{kind}s_batched"] = round(requests)
        figures[f"{kind}_batch_mean"] = round(requests / batches, 2) if batches else 0.0
    return figures


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------------- runs


async def run_step(
    kind: str, url: str, streams: list[Clip], args: argparse.Namespace
) -> list[SessionResult]:
    session = {
        "streamscribe": streamscribe_session,
        "whisperlive": whisperlive_session,
        "whisperlivekit": whisperlivekit_session,
    }[kind]
    rng = random.Random(len(streams))
    tasks = [
        session(
            url, stream, 0 if args.burst else rng.uniform(0, args.stagger_s), args.chunk_ms / 1000
        )
        for stream in streams
    ]
    return list(await asyncio.gather(*tasks))


def load_test(args: argparse.Namespace) -> dict[str, Any]:
    clips = english_clips()
    port = free_port()
    if args.server == "streamscribe":
        extra = ["--admission", "false"] if not args.admission else []
        process = start_streamscribe(port, args.model, extra + args.server_args)
        url = f"ws://127.0.0.1:{port}/v1/stream"
    elif args.server == "whisperlive":
        process = start_whisperlive(port, args.model)
        url = f"ws://127.0.0.1:{port}"
    else:
        process = start_whisperlivekit(port, args.model, args.wlk_policy)
        url = f"ws://127.0.0.1:{port}/asr?language=en"
    steps = []
    try:
        watch = ProcessWatch(process.pid)
        for n in args.steps:
            streams = [
                build_stream(
                    clips,
                    0 if args.burst else index * 5,
                    args.session_s,
                    0 if args.burst else index,
                )
                for index in range(n)
            ]
            watch.cpu_at_start = watch.cpu_s()
            client_cpu_at_start = time.process_time()
            batches_before = batch_counts(port) if args.server == "streamscribe" else None
            started = time.monotonic()
            results = asyncio.run(run_step(args.server, url, streams, args))
            wall_s = time.monotonic() - started
            # The load client shares the machine: what it takes is not the server's to use.
            client_cores = (time.process_time() - client_cpu_at_start) / wall_s
            step = summarize(n, results, watch, wall_s)
            step["client_cpu_cores_used"] = round(client_cores, 2)
            if batches_before is not None:
                step.update(batch_figures(batches_before, batch_counts(port)))
            steps.append(step)
            print(json.dumps(step), flush=True)
            if not step["holds"] and not args.keep_going:
                break
            time.sleep(3)
        held = [step["sessions"] for step in steps if step["holds"]]
        return {
            "server": args.server,
            "model": args.model,
            "session_s": args.session_s,
            "chunk_ms": args.chunk_ms,
            "stagger_s": 0 if args.burst else args.stagger_s,
            "burst": args.burst,
            "admission": args.admission,
            "largest_n_that_holds": max(held) if held else 0,
            "steps": steps,
            "peak_rss_mb": round(watch.peak_rss_mb()),
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """One session streaming ``soak_s`` of looped speech with pauses: RSS and lag over time."""
    clips = english_clips()
    stream = build_stream(clips, 0, args.soak_s, 0)
    port = free_port()
    process = start_streamscribe(port, args.model, ["--admission", "false", *args.server_args])
    watch = ProcessWatch(process.pid)
    samples: list[dict[str, float]] = []

    async def sample_rss(stop: asyncio.Event, started: float) -> None:
        while not stop.is_set():
            samples.append({"t_s": round(time.monotonic() - started), "rss_mb": watch.rss_mb()})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)

    async def main() -> SessionResult:
        stop = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(sample_rss(stop, started))
        url = f"ws://127.0.0.1:{port}/v1/stream"
        result = await streamscribe_session(url, stream, 0, args.chunk_ms / 1000)
        stop.set()
        await sampler
        return result

    try:
        result = asyncio.run(main())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    lags = result.end_to_final_s()
    quarter = max(1, len(samples) // 4)
    return {
        "soak_s": round(len(stream.audio) / RATE_HZ),
        "model": args.model,
        # what the server's allocator was told (it inherits this process's environment)
        "allocator_env": {
            name: os.environ[name]
            for name in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD")
            if name in os.environ
        },
        "finals": len(result.finals),
        "wer": _round(wer([result]), 4),
        "rss_mb_first_quarter_median": round(
            statistics.median(s["rss_mb"] for s in samples[:quarter])
        ),
        "rss_mb_last_quarter_median": round(
            statistics.median(s["rss_mb"] for s in samples[-quarter:])
        ),
        "rss_mb_max": round(max(s["rss_mb"] for s in samples)),
        "lag_p50_s": _round(percentile(lags, 50)),
        "lag_p95_s": _round(percentile(lags, 95)),
        "lag_max_s": _round(max(lags) if lags else None),
        # drift shows as the last quarter's finals waiting longer than the first quarter's
        "lag_p95_s_first_quarter": _round(percentile(lags[: max(1, len(lags) // 4)], 95)),
        "lag_p95_s_last_quarter": _round(percentile(lags[-max(1, len(lags) // 4) :], 95)),
        "rss_samples": samples,
        "lags": [round(latency, 3) for latency in lags],
    }


def plot(name: str, body: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figure", file=sys.stderr)
        return None
    FIGURES.mkdir(exist_ok=True)
    path = FIGURES / f"{name}.png"
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    if "rss_samples" in body:
        axes[0].plot(
            [s["t_s"] for s in body["rss_samples"]], [s["rss_mb"] for s in body["rss_samples"]]
        )
        axes[0].set(xlabel="time (s)", ylabel="server RSS (MB)", title="RSS over the soak")
        axes[1].plot(body["lags"], marker=".", linestyle="none")
        axes[1].axhline(BUDGET_S, color="red", linewidth=0.8)
        axes[1].set(xlabel="final #", ylabel="end of speech to final (s)", title="lag")
    else:
        for run in body["runs"]:
            label = f"{run['server']} {run.get('model', '')}".strip()
            xs = [s["sessions"] for s in run["steps"]]
            worst = [s.get("worst_session_p95_s", s["final_p95_s"]) for s in run["steps"]]
            axes[0].plot(xs, worst, marker="o", label=label)
            axes[1].plot(xs, [s["wer"] for s in run["steps"]], marker="o", label=label)
        axes[0].axhline(BUDGET_S, color="red", linewidth=0.8)
        axes[0].set(
            xlabel="concurrent sessions", ylabel="worst session's p95, end of speech to final (s)"
        )
        axes[1].set(xlabel="concurrent sessions", ylabel="WER")
        axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    return path


def record(title: str, command: str, body: dict[str, Any], name: str) -> None:
    """The figures in RESULTS.md, and the whole JSON behind them in benchmarks/results/load/."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    LOAD_RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = LOAD_RESULTS / f"{time.strftime('%Y-%m-%d')}-{commit}-{name}.json"
    json_path.write_text(json.dumps({"commit": commit, "command": command, **body}, indent=2))
    hidden = ("rss_samples", "lags", "raw")
    shown = {key: value for key, value in body.items() if key not in hidden}
    if "steps" in shown:
        shown["steps"] = [
            {key: value for key, value in step.items() if key not in hidden}
            for step in shown["steps"]
        ]
    text = (
        f"\n## {title} ({time.strftime('%Y-%m-%d')})\n\nMachine: {os.uname().machine}, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}. Commit: {commit}. "
        f"Command: `{command}`. JSON: `{json_path.relative_to(ROOT)}`.\n\n"
        f"```json\n{json.dumps(shown, indent=2)}\n```\n"
    )
    with RESULTS.open("a") as results:
        results.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        choices=("streamscribe", "whisperlive", "whisperlivekit"),
        default="streamscribe",
    )
    parser.add_argument(
        "--wlk-policy",
        choices=("localagreement", "simulstreaming"),
        default="localagreement",
        help="WhisperLiveKit's streaming policy",
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--steps", default="1,2,4,6,8")
    parser.add_argument("--session-s", type=float, default=60.0)
    parser.add_argument("--keep-going", action="store_true", help="run every step")
    parser.add_argument("--admission", action="store_true", help="keep admission control on")
    parser.add_argument("--server-arg", dest="server_args", action="append", default=[])
    parser.add_argument("--soak-s", type=float, default=0.0, help="run the soak instead")
    parser.add_argument("--figure", default="", help="the figure's name (default: by run)")
    parser.add_argument("--chunk-ms", type=int, default=20, help="audio per message")
    parser.add_argument("--stagger-s", type=float, default=10.0, help="sessions start within")
    parser.add_argument(
        "--burst", action="store_true", help="every session the same audio, all at once"
    )
    parser.add_argument(
        "--plot-from", type=Path, nargs="+", help="draw the figure from recorded JSON files"
    )
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.steps = [int(step) for step in args.steps.split(",")]
    command = "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.plot_from:
        bodies = [json.loads(path.read_text()) for path in args.plot_from]
        body = bodies[0] if "rss_samples" in bodies[0] else {"runs": bodies}
        print(plot(args.figure or "load", body))
        return 0
    if args.soak_s:
        body = soak(args)
        told = body["allocator_env"].items()
        allocator = ", ".join(f"{name}={value}" for name, value in told) or "glibc defaults"
        title = f"Soak: one {body['soak_s']} s stream ({args.model}, {allocator})"
        name = args.figure or "soak"
        plot(name, body)
    else:
        body = load_test(args)
        title = f"Load: concurrent real-time sessions ({args.server}, {args.model})"
        name = args.figure or f"load-{args.server}-{args.model}"
        plot(name, {"runs": [body]})
    if args.out:
        args.out.write_text(json.dumps(body, indent=2))
    hidden = ("rss_samples", "lags", "raw")
    print(json.dumps({k: v for k, v in body.items() if k not in hidden}, indent=2))
    if args.record:
        record(title, command, body, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
