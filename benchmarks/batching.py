"""What batching across sessions buys: the same requests one by one and in batches.

Partials: eight greedy partials (the first 4 s of eight English files of ../shared/audio, each
with a carried prompt). Finals: the first 6 s of the same files, beam 5 with the temperature
fallback, each with carried text. Each kind goes through the local backend's
``transcribe_batch`` in batches of 1, 2, 4 and 8, after a warm-up; each setting is timed three
times and the best is kept. A batch of 1 is one request alone through the same code; for
finals ``alone_s`` is also timed through ``transcribe`` (faster-whisper's own pipeline, the
path a final waiting alone takes). Also checked: the batched texts equal the texts run alone.

    python benchmarks/batching.py --model tiny.en --record
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SIZES = (1, 2, 4, 8)
CARRIED = "We met at the station and talked."


def measure(backend, items, *, final: bool) -> dict[str, object]:
    """Best of three timings per batch size, and whether the texts match those run alone."""
    backend.transcribe_batch(items[:2], final=final)
    alone_texts = [backend.transcribe_batch([item], final=final)[0].text for item in items]
    figures: dict[str, object] = {}
    if final:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            texts = [backend.transcribe(*item, final=True).text for item in items]
            best = min(best, time.perf_counter() - started)
        figures["alone_s"] = round(best, 3)
        figures["alone_same_text"] = texts == alone_texts
    for size in SIZES:
        best = float("inf")
        texts = []
        for _ in range(3):
            started = time.perf_counter()
            texts = []
            for offset in range(0, len(items), size):
                chunk = items[offset : offset + size]
                texts += [a.text for a in backend.transcribe_batch(chunk, final=final)]
            best = min(best, time.perf_counter() - started)
        figures[f"batch_{size}_s"] = round(best, 3)
        figures[f"batch_{size}_same_text"] = texts == alone_texts
    base = float(figures["batch_1_s"])  # type: ignore[arg-type]
    for size in SIZES[1:]:
        figures[f"batch_{size}_speedup"] = round(base / float(figures[f"batch_{size}_s"]), 2)  # type: ignore[arg-type]
    return figures


def main(argv: list[str] | None = None) -> int:
    from client.sources import decode_file
    from server.backends.local import FasterWhisperTranscriber, default_cpu_threads
    from server.core.transcription import DecodeOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--requests", type=int, default=8, help="requests of each kind")
    parser.add_argument("--kind", choices=["partial", "final", "both"], default="both")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    rows = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    files = [row["file"] for row in rows if row["language"] == "en"][: args.requests]
    audio = [
        np.frombuffer(decode_file(SHARED / name), "<i2").astype(np.float32) / 32768
        for name in files
    ]
    options = DecodeOptions(language="en", prompt=CARRIED, carried_prompt_chars=len(CARRIED))
    backend = FasterWhisperTranscriber(
        args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=default_cpu_threads(1),  # one call at a time: every core
    )
    backend.load()
    figures: dict[str, object] = {"model": args.model, "requests": len(files)}
    if args.kind in ("partial", "both"):
        items = [(clip[: 4 * 16_000], options) for clip in audio]
        figures["partials"] = measure(backend, items, final=False)
    if args.kind in ("final", "both"):
        items = [(clip[: 6 * 16_000], options) for clip in audio]
        figures["finals"] = measure(backend, items, final=True)
    print(json.dumps(figures, indent=2))
    if args.record:
        command = "python benchmarks/batching.py " + " ".join(argv or sys.argv[1:])
        with RESULTS.open("a") as results:
            results.write(
                f"\n## Batching across sessions ({time.strftime('%Y-%m-%d')})\n\n"
                f"Machine: {os.uname().machine}, {os.cpu_count()} cores, Python "
                f"{sys.version.split()[0]}. Command: `{command}`\n\n"
                f"```json\n{json.dumps(figures, indent=2)}\n```\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
