"""Streaming benchmark: latency, WER, real-time factor and memory of one live session.

Joins the English files of ../shared/audio into one stream with 1-2 s pauses, streams it at
real-time pace to a server started in a subprocess, and reports:

- first partial: from speech onset (speech.started + pre-roll) to the first partial, p50/p95
- final latency: the server's ``latency_ms`` (after the silence window), p50/p95
- WER of the finals, and of the same model transcribing each file offline with faster-whisper
- with ``--rest``: the WER of the same server's REST answer (``/v1/audio/transcriptions``, each
  file whole), the baseline a streaming transcript should be within a point of
- real-time factor: server CPU seconds per second of audio; peak RSS of the server process

Usage: python benchmarks/streaming_latency.py [--model tiny.en] [--beam-size 1] [--record]
       python benchmarks/streaming_latency.py --model base --server-defaults --rest --record
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client.sources import decode_file  # noqa: E402
from client.stream import stream_pcm  # noqa: E402

SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
RATE = 16_000
PREFIX_PADDING_MS = 300


def english_files() -> list[dict]:
    entries = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    return [entry for entry in entries if entry["language"] == "en"]


def build_stream(entries: list[dict], seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    parts = []
    for entry in entries:
        parts.append(np.frombuffer(decode_file(SHARED / entry["file"]), "<i2"))
        parts.append(np.zeros(int(RATE * rng.uniform(1.0, 2.0)), dtype="<i2"))
    return np.concatenate(parts).tobytes()


def normalize(text: str) -> str:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()(re.sub(r"\[[^\]]*\]|<[^>]*>", " ", text))


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """WER after normalising; over every (reference, hypothesis) pair at once for lists."""
    import jiwer

    references = [reference] if isinstance(reference, str) else reference
    hypotheses = [hypothesis] if isinstance(hypothesis, str) else hypothesis
    return float(jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses]))


def offline_text(model_dir: str, entries: list[dict], beam_size: int) -> str:
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    texts = []
    for entry in entries:
        audio = np.frombuffer(decode_file(SHARED / entry["file"]), "<i2").astype(np.float32) / 32768
        segments, _ = model.transcribe(audio, language="en", beam_size=beam_size)
        texts.append(" ".join(segment.text.strip() for segment in segments))
    return " ".join(texts)


def rest_text(base_url: str, entries: list[dict]) -> str:
    """The server's own REST answer for each file, whole, as an OpenAI client would ask."""
    texts = []
    for entry in entries:
        with (SHARED / entry["file"]).open("rb") as audio:
            response = httpx.post(
                f"{base_url}/v1/audio/transcriptions",
                files={"file": (entry["file"], audio)},
                data={"model": "whisper-1", "language": "en", "response_format": "json"},
                timeout=300,
            )
        response.raise_for_status()
        texts.append(response.json()["text"])
    return " ".join(texts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam-size", type=int, default=1, help="beam size of finals")
    parser.add_argument("--vad", default="webrtc")
    parser.add_argument("--workers", type=int, default=1, help="model calls at once")
    parser.add_argument("--cpu-threads", type=int, default=2, help="threads per model call")
    parser.add_argument("--events", type=Path, help="write every event as JSON lines here")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument(
        "--server-defaults",
        action="store_true",
        help="run the server as `streamscribe serve` does (no beam, VAD, worker or thread flags)",
    )
    parser.add_argument("--rest", action="store_true", help="also score the server's REST answer")
    args = parser.parse_args(argv)

    entries = english_files()
    pcm = build_stream(entries)
    audio_s = len(pcm) / 2 / RATE
    port = free_port()
    tuning = [
        *("--cpu-threads", str(args.cpu_threads), "--workers", str(args.workers)),
        *("--beam-size", str(args.beam_size)),
    ]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamscribe", "serve", "--model", args.model),
            *("--port", str(port), "--compute-type", "int8", "--log-level", "warning"),
            *([] if args.server_defaults else tuning),
        ],
        cwd=ROOT,
    )
    stream_options = (
        {"language": "en"} if args.server_defaults else {"language": "en", "vad": args.vad}
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not become ready")
            time.sleep(0.2)
        cpu_before = proc_cpu_s(server.pid)
        result = asyncio.run(
            stream_pcm(
                f"ws://127.0.0.1:{port}/v1/stream",
                pcm,
                speed=args.speed,
                options=stream_options,
            )
        )
        cpu_s = proc_cpu_s(server.pid) - cpu_before
        peak_rss_mb = proc_peak_rss_mb(server.pid)
        rest = rest_text(f"http://127.0.0.1:{port}", entries) if args.rest else None
    finally:
        server.terminate()
        server.wait(30)

    if args.events:
        args.events.write_text("".join(json.dumps(event) + "\n" for event in result.events))
    first_partial_ms = []
    for started in result.of_type("speech.started"):
        onset = result.started_at + (started["start_ms"] + PREFIX_PADDING_MS) / 1000 / args.speed
        partials = [
            p
            for p in result.of_type("transcript.partial")
            if p["utterance_id"] == started["utterance_id"]
        ]
        if partials:
            first_partial_ms.append((partials[0]["received_at"] - onset) * 1000)
    final_latency_ms = [final["latency_ms"] for final in result.finals]

    from server.backends.models import resolve_model

    reference = " ".join(entry["text"] for entry in entries)
    streaming_text = result.text
    offline = offline_text(resolve_model(args.model), entries, beam_size=5)
    figures = {
        "audio_s": round(audio_s, 1),
        "utterances": len(result.finals),
        "first_partial_p50_ms": round(percentile(first_partial_ms, 50)),
        "first_partial_p95_ms": round(percentile(first_partial_ms, 95)),
        "final_latency_p50_ms": round(percentile(final_latency_ms, 50)),
        "final_latency_p95_ms": round(percentile(final_latency_ms, 95)),
        "final_latency_max_ms": round(max(final_latency_ms)),
        "wer_streaming_vs_reference": round(wer(reference, streaming_text), 4),
        "wer_offline_vs_reference": round(wer(reference, offline), 4),
        "wer_streaming_vs_offline": round(wer(offline, streaming_text), 4),
        **(
            {
                "wer_rest_vs_reference": round(wer(reference, rest), 4),
                "streaming_minus_rest_points": round(
                    100 * (wer(reference, streaming_text) - wer(reference, rest)), 2
                ),
            }
            if rest is not None
            else {}
        ),
        "rtf_cpu_s_per_audio_s": round(cpu_s / audio_s, 3),
        "server_peak_rss_mb": round(peak_rss_mb),
    }
    print(json.dumps(figures, indent=2))
    if args.record:
        texts = {"reference": reference, "streaming": streaming_text, "offline": offline}
        record(args, figures, texts | ({"rest": rest} if rest is not None else {}))
    return 0


def record(args: argparse.Namespace, figures: dict, texts: dict[str, str]) -> None:
    """The figures in RESULTS.md, and the JSON behind them (with every transcript) in
    benchmarks/results/streaming_latency/."""
    from recording import append_results, save_json

    tuning = (
        "--server-defaults"
        if args.server_defaults
        else f"--beam-size {args.beam_size} --vad {args.vad} --workers {args.workers} "
        f"--cpu-threads {args.cpu_threads}"
    )
    rest = " --rest" if args.rest else ""
    command = f"python benchmarks/streaming_latency.py --model {args.model} {tuning}{rest} --record"
    setup = (
        "server defaults"
        if args.server_defaults
        else f"final beam {args.beam_size}, {args.vad} VAD, {args.workers} worker(s) x "
        f"{args.cpu_threads} thread(s)"
    )
    body = {"command": command, "model": args.model, "figures": figures, "texts": texts}
    path, head, where = save_json("streaming_latency", body, args.model)
    append_results(
        [
            f"\n## Streaming latency, {args.model} int8, {setup} ({date.today().isoformat()})\n",
            f"Machine: {where}. Commit: {head}. Command: `{command}`. "
            f"JSON: `{path.relative_to(ROOT)}`.\n",
            "| figure | value |",
            "| --- | --- |",
            *[f"| {key} | {value} |" for key, value in figures.items()],
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
