"""What a final costs, and says, on a short encoder window (``--final-window-s``) against
Whisper's 30 s: the server's own local backend, beam 5 with the temperature fallback, int8.

Two cases:

- ``whole files``: every English file of ../shared/audio up to 15 s, one final each, as an
  utterance that ends in silence: median time per final and WER against the references;
- ``forced cuts``: the 27 s monologue ``en_mfa_acoustic_corpus.wav`` streamed through a server
  with ``max_utterance_duration_ms`` 4000 (the integration test's case): finals cut in the
  middle of speech (which keep 30 s since 2026-12-06) and finals after short pauses; the
  finals' words and WER, with the texts to see what changed.

Usage: python benchmarks/final_window.py [--model tiny.en] [--window-s 10] [--record]
Writes the JSON behind the figures to benchmarks/results/final_window/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import append_results, save_json  # noqa: E402

from benchmarks.streaming_latency import wer  # noqa: E402
from client.sources import decode_file  # noqa: E402

SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
MONOLOGUE = "en_mfa_acoustic_corpus.wav"


def manifest() -> list[dict]:
    return [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]


def english_files() -> list[dict]:
    return [e for e in manifest() if e["language"] == "en" and e["duration_s"] <= 15]


def whole_files(model: str, window_s: float) -> dict:
    from server.backends.local import FasterWhisperTranscriber
    from server.core.transcription import DecodeOptions

    backend = FasterWhisperTranscriber(
        model, device="cpu", compute_type="int8", cpu_threads=2, final_window_s=window_s
    )
    backend.load()
    entries = english_files()
    texts, times = [], []
    for entry in entries:
        pcm = np.frombuffer(decode_file(SHARED / entry["file"]), "<i2")
        started = time.perf_counter()
        options = DecodeOptions(language="en", ends_in_silence=True)  # whole files end so
        answer = backend.transcribe(pcm.astype(np.float32) / 32768, options)
        times.append(time.perf_counter() - started)
        texts.append(answer.text)
    return {
        "finals": len(entries),
        "median_ms": round(statistics.median(times) * 1000),
        "total_s": round(sum(times), 2),
        "wer": round(wer(" ".join(e["text"] for e in entries), " ".join(texts)), 4),
        "texts": texts,
    }


def forced_cuts(model: str, window_s: float) -> dict:
    from client.stream import stream_pcm
    from server.settings import ServerSettings
    from server.web.app import create_app
    from tests.support import running_server

    settings = ServerSettings(model=model, compute_type="int8", final_window_s=window_s)
    pcm = decode_file(SHARED / MONOLOGUE)
    reference = next(e["text"] for e in manifest() if e["file"] == MONOLOGUE)
    with running_server(create_app(settings)) as server:
        options = {"language": "en", "max_utterance_duration_ms": 4000}
        result = asyncio.run(stream_pcm(server.ws_url, pcm, speed=None, options=options))
    text = " ".join(final["text"] for final in result.finals)
    return {
        "finals": len(result.finals),
        "words": len(text.split()),
        "wer": round(wer(reference, text), 4),
        "texts": [final["text"] for final in result.finals],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    runs = {
        label: {
            "whole_files": whole_files(args.model, w),
            "forced_cuts": forced_cuts(args.model, w),
        }
        for label, w in (("30 s", 0.0), (f"{args.window_s:g} s", args.window_s))
    }
    command = f"python benchmarks/final_window.py --model {args.model} --window-s {args.window_s:g}"
    out, commit, machine = save_json("final_window", {"command": command, "runs": runs}, args.model)
    rows = [
        f"| {label} | {run['whole_files']['median_ms']} | {run['whole_files']['wer']:.2%} | "
        f"{run['forced_cuts']['words']} | {run['forced_cuts']['wer']:.2%} |"
        for label, run in runs.items()
    ]
    print("\n".join(rows))
    print(f"written to {out.relative_to(ROOT)}")
    if args.record:
        append_results(
            [
                f"\n## Final cost by encoder window, {args.model} ({date.today().isoformat()}, "
                f"{commit})\n\nMachine: {machine}. Command: `{command}`; JSON: "
                f"`{out.relative_to(ROOT)}` (with every text). Whole files: "
                f"{runs['30 s']['whole_files']['finals']} English files up to 15 s, one final "
                "each; forced cuts: the 27 s monologue cut every 4 s.\n",
                "| window | whole files: median ms per final | WER | forced cuts: words | WER |",
                "| --- | --- | --- | --- | --- |",
                *rows,
            ]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
