"""Continuous speech: how long after each cut point its words arrive as a final.

Readings without long pauses (a sonnet, a fast talk) are streamed at real-time pace in 20 ms
messages to a fresh server. Every final ends at a cut point in the stream (``end_ms``): where
a pause ended the utterance, or where ``max_utterance_duration_ms`` forced a cut. The client
knows when it sent the audio at that point (start of sending + ``end_ms``, at real-time pace),
so "cut point to final" is measured the same way whatever ended the utterance. Reported per
model and file: finals by reason, cut point to final p50/p95/max, and the WER.

Usage: python benchmarks/continuous.py [--models tiny.en,base] [--label after] [--record]
       [--files a.wav,b.mp3] [--server-arg=--log-level=debug]  (per-final rows in the JSON)
JSON: benchmarks/results/continuous/<date>-<commit>-<label>.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import append_results, save_json  # noqa: E402
from remote_overhead import start_server, stop  # noqa: E402
from streaming_latency import SHARED, percentile, wer  # noqa: E402

from client.sources import decode_file  # noqa: E402
from client.stream import stream_pcm  # noqa: E402

FILES = ["en_librivox_sonnet001.mp3", "en_mfa_acoustic_corpus.wav"]


def reference(name: str) -> str:
    for line in (SHARED / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["file"] == name:
            return str(entry["text"])
    raise KeyError(name)


def measure(port: int, name: str) -> dict:
    pcm = decode_file(SHARED / name, 16_000) + b"\x00\x00" * 16_000 * 2
    arrivals: list[tuple[float, dict]] = []

    async def run() -> tuple[float, str]:
        def on_event(event: dict) -> None:
            if event["type"] == "transcript.final":
                arrivals.append((time.monotonic(), event))  # the clock of ``started_at``

        result = await stream_pcm(
            f"ws://127.0.0.1:{port}/v1/stream",
            pcm,
            speed=1.0,
            chunk_ms=20,
            options={"language": "en"},
            on_event=on_event,
        )
        return result.started_at, result.text

    started_at, text = asyncio.run(run())
    delays = [(at - (started_at + event["end_ms"] / 1000)) * 1000 for at, event in arrivals]
    return {
        "file": name,
        "audio_s": round(len(pcm) / 32_000, 1),
        "finals": len(arrivals),
        "reasons": dict(Counter(event["reason"] for _, event in arrivals)),
        "cut_to_final_p50_ms": round(percentile(delays, 50)),
        "cut_to_final_p95_ms": round(percentile(delays, 95)),
        "cut_to_final_max_ms": round(max(delays)),
        "within_1s": sum(delay <= 1000 for delay in delays),
        "wer": round(wer(reference(name), text), 4),
        # Each final, so a late one can be found in the server's debug log.
        "per_final": [
            {
                "utterance_id": event.get("utterance_id"),
                "reason": event["reason"],
                "start_ms": event["start_ms"],
                "end_ms": event["end_ms"],
                "cut_to_final_ms": round(delay),
                "latency_ms": event.get("latency_ms"),
            }
            for (_, event), delay in zip(arrivals, delays, strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--label", default="", help="a name for this run (before, after)")
    parser.add_argument(
        "--files", default=",".join(FILES), help="shared audio files, comma-separated"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        dest="server_args",
        help="one more server flag (repeatable), e.g. --server-arg=--log-level=debug",
    )
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    body: dict = {"label": args.label}
    for model in args.models.split(","):
        server, port = start_server("--model", model, "--compute-type", "int8", *args.server_args)
        try:
            body[model] = [measure(port, name) for name in args.files.split(",")]
        finally:
            stop(server)
    print(json.dumps(body, indent=2))
    if args.record:
        record(args, body)
    return 0


def record(args: argparse.Namespace, body: dict) -> None:
    json_path, commit, machine = save_json("continuous", body, args.label)
    lines = [
        f"\n## Continuous speech: cut point to final ({args.label or 'run'}, {date.today()})\n",
        f"Machine: {machine}. Commit: {commit}. Command: `python benchmarks/continuous.py "
        f"--models {args.models} --label {args.label} --record`. "
        f"JSON: `{json_path.relative_to(ROOT)}`.\n",
        "| model | file | finals (reasons) | cut point to final p50 / p95 / max | within 1 s "
        "| WER |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model in args.models.split(","):
        for row in body[model]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["reasons"].items()))
            lines.append(
                f"| {model} | {row['file']} | {row['finals']} ({reasons}) | "
                f"{row['cut_to_final_p50_ms']} / {row['cut_to_final_p95_ms']} / "
                f"{row['cut_to_final_max_ms']} ms | {row['within_1s']} of {row['finals']} | "
                f"{row['wer'] * 100:.1f} % |"
            )
    append_results(lines)


if __name__ == "__main__":
    sys.exit(main())
