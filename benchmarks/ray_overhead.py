"""Ray Serve backend benchmark: one StreamScribe process against a gateway and two replicas on
the same cores.

Both set-ups get the same two CPU threads for the model: the single process runs tiny.en int8
with ``--workers 2 --cpu-threads 1``; the cluster (``ray start --head --num-cpus 2``) runs two
replicas with one thread each (``streamscribe ray deploy --replicas 2 --cpu-threads 1``) behind
one gateway (``streamscribe serve --backend ray``). The first ``--files`` English files of
../shared/audio, joined with 1-2 s pauses, are streamed at real-time pace by ``--sessions``
concurrent sessions (each list entry one run), first to the single process, then to the gateway.

Reported per run: final latency after the silence window (the server's ``latency_ms``)
p50/p95, the model time of each final (``inference_ms``, for the cluster the replica's own) and
the WER. The overhead per final is the difference of the latencies at the same load. Then the
request path alone: ``--requests`` finals of 3 s of speech sent one after another through the
gateway's backend (``RayTranscriber``), the round trip against the replica's reported model time
and queue wait: what the handle, the serialisation and the routing cost.

Usage: python benchmarks/ray_overhead.py [--files 6] [--sessions 1,4] [--record]
JSON: benchmarks/results/ray/<date>-<commit>.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import append_results, save_json  # noqa: E402
from remote_overhead import start_server, stop  # noqa: E402
from streaming_latency import build_stream, english_files, free_port, percentile, wer  # noqa: E402

from client.stream import stream_pcm  # noqa: E402

MODEL = ["--model", "tiny.en", "--compute-type", "int8"]
CALM = ["--admission", "false", "--final-latency-budget-ms", "60000", "--max-final-load", "1.0"]
START = ["start", "--head", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
DEPLOY = [sys.executable, "-m", "streamscribe", "ray", "deploy", *MODEL, "--replicas", "2"]


def ray_command() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [ray_command(), *START, f"--port={address.split(':')[1]}"],
        check=True,
        capture_output=True,
        env=env,
    )
    try:
        deploy = subprocess.run(
            [*DEPLOY, "--cpu-threads", "1", "--address", address],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        print(deploy.stdout.strip(), file=sys.stderr)
        yield address
    finally:
        subprocess.run([ray_command(), "stop", "--force"], capture_output=True, env=env)


async def sessions(port: int, pcm: bytes, count: int) -> list:
    url = f"ws://127.0.0.1:{port}/v1/stream"
    return await asyncio.gather(
        *(stream_pcm(url, pcm, speed=1.0, options={"language": "en"}) for _ in range(count))
    )


def figures(results: list, reference: str) -> dict[str, float]:
    finals = [final for result in results for final in result.finals]
    latencies = [final["latency_ms"] for final in finals]
    inference = [final["inference_ms"] for final in finals]
    return {
        "finals": len(finals),
        "final_latency_p50_ms": round(percentile(latencies, 50)),
        "final_latency_p95_ms": round(percentile(latencies, 95)),
        "inference_p50_ms": round(percentile(inference, 50)),
        "wer": round(wer([reference] * len(results), [result.text for result in results]), 4),
    }


def streamed(port: int, pcm: bytes, reference: str, counts: list[int]) -> dict[str, dict]:
    return {
        f"{count}_sessions": figures(asyncio.run(sessions(port, pcm, count)), reference)
        for count in counts
    }


def request_path(address: str, requests: int, audio: np.ndarray) -> dict[str, float]:
    """Round trip through ``RayTranscriber`` against the replica's own model time and wait."""
    from server.backends.ray_gateway import RayTranscriber
    from server.core.transcription import DecodeOptions
    from server.settings import RaySettings

    async def measure() -> list[tuple[float, float]]:
        backend = RayTranscriber(RaySettings(ray_address=address), model="tiny.en")
        await backend.start()
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            answer = await backend.transcribe(audio, DecodeOptions(language="en"), final=True)
            round_trip_ms = (time.perf_counter() - started) * 1000
            samples.append((round_trip_ms, answer.inference_ms + answer.queue_ms))
        return samples

    import ray

    samples = asyncio.run(measure())
    ray.shutdown()  # before the cluster stops, or the driver reports its loss
    overheads = [round_trip - replica for round_trip, replica in samples]
    return {
        "requests": requests,
        "round_trip_p50_ms": round(percentile([s[0] for s in samples], 50), 1),
        "replica_time_p50_ms": round(percentile([s[1] for s in samples], 50), 1),
        "overhead_p50_ms": round(percentile(overheads, 50), 1),
        "overhead_p95_ms": round(percentile(overheads, 95), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="English files in the stream")
    parser.add_argument("--sessions", default="1,4", help="concurrent sessions per run")
    parser.add_argument("--requests", type=int, default=40, help="finals on the request path")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.sessions.split(",")]
    entries = english_files()[: args.files]
    pcm = build_stream(entries)
    reference = " ".join(entry["text"] for entry in entries)
    body: dict = {"audio_s": round(len(pcm) / 32_000, 1), "files": args.files}

    single, port = start_server(*MODEL, *CALM, "--workers", "2", "--cpu-threads", "1")
    try:
        body["one_process"] = streamed(port, pcm, reference, counts)
    finally:
        stop(single)
    with cluster() as address:
        gateway, port = start_server(
            "--backend", "ray", "--ray-address", address, "--model", "tiny.en", *CALM
        )
        try:
            body["gateway_2_replicas"] = streamed(port, pcm, reference, counts)
        finally:
            stop(gateway)
        speech = np.frombuffer(pcm[: 3 * 32_000], "<i2").astype(np.float32) / 32768
        body["request_path"] = request_path(address, args.requests, speech)
    print(json.dumps(body, indent=2))
    if args.record:
        record(args, body)
    return 0


def record(args: argparse.Namespace, body: dict) -> None:
    json_path, commit, machine = save_json("ray", body)
    command = f"python benchmarks/ray_overhead.py --files {args.files} --sessions {args.sessions}"
    lines = [
        f"\n## Ray Serve backend: one process against gateway + 2 replicas ({date.today()})\n",
        f"Machine: {machine}. Commit: {commit}. Command: `{command} --record`. "
        f"JSON: `{json_path.relative_to(ROOT)}`.\n",
        "```json",
        json.dumps(body, indent=2),
        "```",
        "",
    ]
    append_results(lines)


if __name__ == "__main__":
    sys.exit(main())
