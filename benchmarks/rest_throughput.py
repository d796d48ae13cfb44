"""REST benchmark: the OpenAI-compatible endpoint against faster-whisper called directly, and a
short file's latency while long files are being transcribed.

1. Throughput. The English files of ../shared/audio up to 30 s, one after another: faster-whisper
   directly (the file path in, the same decode options as the server's local backend for a json
   request: tiny.en int8, beam 5, temperature fallback, no timestamps, no previous-text
   conditioning), then POSTed to `streamscribe serve` with one worker of the same threads.
   Both include decoding the file. Overhead = REST time / direct time - 1 (target <= 5 %).
2. Fairness. The 11 s JFK file posted alone 20 times, then 20 times while four clients keep
   posting a 53 s file (cut into VAD chunks by the server). Target: p95 under load at most twice
   its p95 alone.

Usage: python benchmarks/rest_throughput.py [--rounds 2] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from remote_overhead import start_server, stop  # noqa: E402
from streaming_latency import SHARED, percentile  # noqa: E402

from server.backends.local import FALLBACK_TEMPERATURES  # noqa: E402
from server.backends.models import resolve_model  # noqa: E402

SHORT = "en_jfk.flac"
LONG = "en_librivox_sonnet001.mp3"
THREADS = 2


def english_files(max_s: float = 30.0) -> list[Path]:
    entries = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    return [
        SHARED / e["file"] for e in entries if e["language"] == "en" and e["duration_s"] <= max_s
    ]


def direct(files: list[Path]) -> float:
    from faster_whisper import WhisperModel

    model = WhisperModel(
        resolve_model("tiny.en"), device="cpu", compute_type="int8", cpu_threads=THREADS
    )
    list(model.transcribe(str(files[0]), language="en")[0])  # warm up, like the server
    started = time.perf_counter()
    for path in files:
        segments, _ = model.transcribe(
            str(path),
            language="en",
            beam_size=5,
            temperature=FALLBACK_TEMPERATURES,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        list(segments)
    return time.perf_counter() - started


def via_rest(files: list[Path], port: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    started = time.perf_counter()
    with httpx.Client(timeout=300) as client:
        for path in files:
            response = client.post(
                url,
                files={"file": (path.name, path.read_bytes())},
                data={"model": "whisper-1", "language": "en"},
            )
            response.raise_for_status()
    return time.perf_counter() - started


def post_latency_s(client: httpx.Client, port: int, path: Path) -> float:
    started = time.perf_counter()
    response = client.post(
        f"http://127.0.0.1:{port}/v1/audio/transcriptions",
        files={"file": (path.name, path.read_bytes())},
        data={"model": "whisper-1", "language": "en"},
    )
    response.raise_for_status()
    return time.perf_counter() - started


def fairness(port: int, samples: int) -> dict[str, float]:
    short, long = SHARED / SHORT, SHARED / LONG
    with httpx.Client(timeout=300) as client:
        alone = [post_latency_s(client, port, short) for _ in range(samples)]
    stop_load = threading.Event()
    long_done: list[float] = []

    def keep_posting() -> None:
        with httpx.Client(timeout=600) as client:
            while not stop_load.is_set():
                long_done.append(post_latency_s(client, port, long))

    loaders = [threading.Thread(target=keep_posting, daemon=True) for _ in range(4)]
    for loader in loaders:
        loader.start()
    time.sleep(3)  # the four long files are decoded, chunked and queued
    with httpx.Client(timeout=300) as client:
        loaded = []
        for _ in range(samples):
            loaded.append(post_latency_s(client, port, short))
            time.sleep(0.5)
    stop_load.set()
    for loader in loaders:
        loader.join(600)
    return {
        "short_alone_p50_s": round(percentile(alone, 50), 2),
        "short_alone_p95_s": round(percentile(alone, 95), 2),
        "short_under_4_long_p50_s": round(percentile(loaded, 50), 2),
        "short_under_4_long_p95_s": round(percentile(loaded, 95), 2),
        "ratio_p95": round(percentile(loaded, 95) / percentile(alone, 95), 2),
        "long_requests_completed": len(long_done),
        "long_latency_p50_s": round(percentile(long_done, 50), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--fairness-only", action="store_true", help="only part 2")
    parser.add_argument("--samples", type=int, default=20, help="short requests per condition")
    args = parser.parse_args(argv)
    if args.fairness_only:
        server, port = start_server("--model", "tiny.en", "--compute-type", "int8")
        try:
            print(json.dumps(fairness(port, args.samples), indent=2))
        finally:
            stop(server)
        return 0
    files = english_files()
    audio_s = sum(
        json.loads(line)["duration_s"]
        for line in (SHARED / "manifest.jsonl").read_text().splitlines()
        if (SHARED / json.loads(line)["file"]) in files
    )
    rounds = []
    server, port = start_server(
        "--model", "tiny.en", "--compute-type", "int8", "--beam-size", "5",
        "--workers", "1", "--cpu-threads", str(THREADS),
    )  # fmt: skip
    try:
        for _ in range(args.rounds):
            rest_s = via_rest(files, port)
            direct_s = direct(files)
            rounds.append({"direct_s": round(direct_s, 2), "rest_s": round(rest_s, 2)})
    finally:
        stop(server)
    best = min(r["rest_s"] for r in rounds) / min(r["direct_s"] for r in rounds) - 1
    server, port = start_server("--model", "tiny.en", "--compute-type", "int8")
    try:
        fair = fairness(port, args.samples)
    finally:
        stop(server)
    figures = {
        "files": len(files),
        "audio_s": round(audio_s, 1),
        "rounds": rounds,
        "rest_overhead_best_of_rounds": f"{best * 100:+.1f} %",
        "fairness": fair,
    }
    print(json.dumps(figures, indent=2))
    if args.record:
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        lines = [
            f"\n## REST throughput and fairness ({date.today().isoformat()})\n",
            f"Machine: {machine}. Command: `python benchmarks/rest_throughput.py --rounds "
            f"{args.rounds} --record`\n",
            "```json",
            json.dumps(figures, indent=2),
            "```",
            "",
        ]
        with (ROOT / "benchmarks" / "RESULTS.md").open("a") as out:
            out.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
