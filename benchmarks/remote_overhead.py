"""Remote backend benchmark: the latency the remote path adds, and the failover time.

1. Overhead. The first ``--files`` English files of ../shared/audio, joined with 1-2 s pauses,
   are streamed at real-time pace twice: to a StreamScribe server on the local model (tiny.en
   int8), then to a second StreamScribe server whose backend is ``remote``, pointed at the first
   over its OpenAI-compatible REST API. Same audio, same model, same machine: the difference in
   final latency is what the remote path costs (WAV encoding, multipart HTTP, the REST handler).
2. Failover. The front server gets a local fallback model; partway through a stream the remote
   server is killed (connections refused from then on) and later restarted. Reported: time from
   the kill to the first final answered by the fallback, finals lost (must be 0), and time from
   the restart to the first final answered by the remote again (circuit breaker recovery).

Usage: python benchmarks/remote_overhead.py [--files 8] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streaming_latency import build_stream, english_files, free_port, percentile, wer  # noqa: E402

from client.stream import stream_pcm  # noqa: E402

MODEL_FLAGS = ["--model", "tiny.en", "--compute-type", "int8", "--beam-size", "5"]


def start_server(*flags: str, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    command = [sys.executable, "-m", "streamscribe", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", *flags],
        cwd=ROOT,
        env={**os.environ, "STREAMSCRIBE_REMOTE_API_KEY": "sk-benchmark"},
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"server {flags} did not become ready")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def latency_figures(result, reference: str) -> dict[str, float]:
    latencies = [final["latency_ms"] for final in result.finals]
    return {
        "utterances": len(result.finals),
        "final_latency_p50_ms": round(percentile(latencies, 50)),
        "final_latency_p95_ms": round(percentile(latencies, 95)),
        "wer": round(wer(reference, result.text), 4),
    }


def stream(port: int, pcm: bytes, on_event=None):
    return asyncio.run(
        stream_pcm(
            f"ws://127.0.0.1:{port}/v1/stream",
            pcm,
            speed=1.0,
            options={"language": "en"},
            on_event=on_event,
        )
    )


def overhead(pcm: bytes, reference: str) -> dict[str, dict[str, float]]:
    remote, remote_port = start_server(*MODEL_FLAGS, "--workers", "2")
    try:
        local = latency_figures(stream(remote_port, pcm), reference)
        front, front_port = start_server(
            "--backend",
            "remote",
            "--remote-url",
            f"http://127.0.0.1:{remote_port}/v1",
            "--remote-model",
            "tiny.en",
        )
        try:
            via_remote = latency_figures(stream(front_port, pcm), reference)
        finally:
            stop(front)
    finally:
        stop(remote)
    return {"local": local, "remote": via_remote}


def failover(pcm: bytes, kill_at_s: float, restart_at_s: float) -> dict[str, float]:
    remote, remote_port = start_server(*MODEL_FLAGS, "--workers", "1", "--cpu-threads", "1")
    front, front_port = start_server(
        *MODEL_FLAGS,
        "--workers",
        "1",
        "--cpu-threads",
        "1",
        "--backend",
        "remote",
        "--remote-url",
        f"http://127.0.0.1:{remote_port}/v1",
        "--remote-model",
        "tiny.en",
        "--remote-fallback",
        "local",
    )
    marks: dict[str, float] = {}
    finals: list[tuple[float, str, int]] = []

    def on_event(event: dict) -> None:
        if event["type"] == "transcript.final":
            finals.append((time.monotonic(), event["backend"], event["latency_ms"]))

    async def chaos() -> None:
        nonlocal remote
        started = time.monotonic()
        await asyncio.sleep(kill_at_s)
        remote.kill()  # a dead GPU box: from now on connections are refused
        marks["killed"] = time.monotonic()
        await asyncio.sleep(restart_at_s - (time.monotonic() - started))
        remote, _ = await asyncio.to_thread(
            start_server, *MODEL_FLAGS, "--workers", "1", "--cpu-threads", "1", port=remote_port
        )
        marks["restarted"] = time.monotonic()

    async def run() -> object:
        task = asyncio.create_task(chaos())
        result = await stream_pcm(
            f"ws://127.0.0.1:{front_port}/v1/stream",
            pcm,
            speed=1.0,
            options={"language": "en"},
            on_event=on_event,
        )
        await task
        return result

    try:
        result = asyncio.run(run())
    finally:
        stop(front)
        stop(remote)
    started = len(result.of_type("speech.started"))
    fallback = [(at, latency) for at, backend, latency in finals if backend == "local"]
    back = [at for at, backend, _ in finals if at > marks["restarted"] and backend == "remote"]
    before = [latency for at, backend, latency in finals if at < marks["killed"]]
    return {
        "utterances": started,
        "finals": len(result.finals),
        "errors": len(result.of_type("error")),
        # The first final after the kill waits for its utterance to end; its latency_ms is
        # what the fault cost (refused attempts, backoff, then the local model).
        "kill_to_first_fallback_final_s": round(fallback[0][0] - marks["killed"], 2),
        "first_fallback_final_latency_ms": fallback[0][1],
        "fallback_final_latency_p50_ms": round(percentile([lat for _, lat in fallback], 50)),
        "remote_final_latency_p50_ms_before_fault": round(percentile(before, 50)),
        "restart_to_first_remote_final_s": round(back[0] - marks["restarted"], 2) if back else -1,
        "finals_by_backend": {
            name: sum(1 for _, backend, _ in finals if backend == name)
            for name in ("remote", "local")
        },
    }


def transport(requests: int = 50, audio_s: float = 3.0) -> dict[str, float]:
    """The remote path's own cost: a final of ``audio_s`` seconds sent to a StreamScribe with
    the scripted backend (no model time), WAV encoding and multipart HTTP on loopback."""
    import numpy as np

    from server.backends.remote import RemoteTranscriber
    from server.core.transcription import DecodeOptions

    fake, port = start_server("--backend", "fake")
    audio = (np.random.default_rng(0).normal(0, 0.1, int(16_000 * audio_s))).astype(np.float32)

    async def measure() -> list[float]:
        remote = RemoteTranscriber(f"http://127.0.0.1:{port}/v1", model="whisper-1")
        await remote.start()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            await remote.transcribe(audio, DecodeOptions(language="en", prompt="Earlier."))
            times.append((time.perf_counter() - started) * 1000)
        await remote.close()
        return times

    try:
        times = asyncio.run(measure())
    finally:
        stop(fake)
    return {
        "requests": requests,
        "audio_s": audio_s,
        "round_trip_p50_ms": round(percentile(times, 50), 1),
        "round_trip_p95_ms": round(percentile(times, 95), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8, help="English files in the stream")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument(
        "--transport-only", action="store_true", help="only the HTTP path's own cost"
    )
    args = parser.parse_args(argv)
    if args.transport_only:
        print(json.dumps(transport(), indent=2))
        return 0
    entries = english_files()[: args.files]
    pcm = build_stream(entries)
    audio_s = len(pcm) / 32_000
    reference = " ".join(entry["text"] for entry in entries)
    figures = {
        "transport": transport(),
        "audio_s": round(audio_s, 1),
        **overhead(pcm, reference),
        "failover": failover(pcm, kill_at_s=audio_s * 0.3, restart_at_s=audio_s * 0.6),
    }
    print(json.dumps(figures, indent=2))
    if args.record:
        record(args, figures)
    return 0


def record(args: argparse.Namespace, figures: dict) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"\n## Remote backend overhead and failover ({date.today().isoformat()})\n",
        f"Machine: {machine}. Command: `python benchmarks/remote_overhead.py --files "
        f"{args.files} --record`\n",
        "```json",
        json.dumps(figures, indent=2),
        "```",
        "",
    ]
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
