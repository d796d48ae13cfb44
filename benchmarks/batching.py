"""What batching partials across sessions buys: the same partials one by one and in batches.

Eight partials (the first 4 s of eight English files of ../shared/audio, each with a carried
prompt) go through the local backend's ``transcribe_batch`` in batches of 1, 2, 4 and 8, after a
warm-up; each setting is timed three times and the best is kept. A batch of 1 is exactly one
partial alone. Also checked: the batched texts equal the texts run alone.

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


def main(argv: list[str] | None = None) -> int:
    from client.sources import decode_file
    from server.backends import default_cpu_threads
    from server.backends.local import FasterWhisperTranscriber
    from server.transcription import DecodeOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--partials", type=int, default=8)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    rows = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    files = [row["file"] for row in rows if row["language"] == "en"][: args.partials]
    items = [
        (
            np.frombuffer(decode_file(SHARED / name), "<i2").astype(np.float32)[: 4 * 16_000]
            / 32768,
            DecodeOptions(language="en", prompt="We met at the station and talked."),
        )
        for name in files
    ]
    backend = FasterWhisperTranscriber(
        args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=default_cpu_threads(),
    )
    backend.load()
    backend.transcribe_batch(items[:2])
    alone_texts = [backend.transcribe_batch([item])[0].text for item in items]
    figures: dict[str, object] = {"model": args.model, "partials": len(items)}
    for size in (1, 2, 4, 8):
        best = float("inf")
        texts: list[str] = []
        for _ in range(3):
            started = time.perf_counter()
            texts = []
            for offset in range(0, len(items), size):
                texts += [a.text for a in backend.transcribe_batch(items[offset : offset + size])]
            best = min(best, time.perf_counter() - started)
        figures[f"batch_{size}_s"] = round(best, 3)
        figures[f"batch_{size}_same_text"] = texts == alone_texts
    base = float(figures["batch_1_s"])  # type: ignore[arg-type]
    for size in (2, 4, 8):
        figures[f"batch_{size}_speedup"] = round(base / float(figures[f"batch_{size}_s"]), 2)  # type: ignore[arg-type]
    print(json.dumps(figures, indent=2))
    if args.record:
        command = "python benchmarks/batching.py " + " ".join(argv or sys.argv[1:])
        with RESULTS.open("a") as results:
            results.write(
                f"\n## Batching partials across sessions ({time.strftime('%Y-%m-%d')})\n\n"
                f"Machine: {os.uname().machine}, {os.cpu_count()} cores, Python "
                f"{sys.version.split()[0]}. Command: `{command}`\n\n"
                f"```json\n{json.dumps(figures, indent=2)}\n```\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
