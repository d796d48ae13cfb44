"""What one model call costs on one CPU thread against several (``--cpu-threads``), alone and
with as many calls at once as the server has workers.

For each thread count, in a fresh process (CTranslate2 fixes its threads when the model
loads): every English file of ../shared/audio from 2 to 9 s (not the digit string), through
the server's own local backend, int8, as the server calls it: a final (beam 5, the 10 s
window, as after a pause) and a partial (greedy, the 10 s window); then where the final's time
goes (the encoder on the 10 s window, the decoder of the beam); then the same finals two at a
time from two threads (two workers), as under load. Medians over two passes after a warm-up.

Usage: python benchmarks/threads_per_call.py [--models tiny.en,base] [--threads 1,2] [--record]
JSON: benchmarks/results/threads_per_call/<date>-<commit>.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import append_results, save_json  # noqa: E402

from client.sources import decode_file  # noqa: E402

SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
PASSES = 2


def files() -> list[str]:
    entries = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    return [
        e["file"]
        for e in entries
        if e["language"] == "en" and 2 <= e["duration_s"] <= 9 and "digits" not in e["file"]
    ]


def median_ms(call, audios: list[np.ndarray]) -> float:  # type: ignore[no-untyped-def]
    for audio in audios:
        call(audio)  # warm-up: the first call of each size allocates
    times = []
    for _ in range(PASSES):
        for audio in audios:
            started = time.perf_counter()
            call(audio)
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def measure(model: str, threads: int) -> dict:
    """One model, one thread count: runs in its own process."""
    from server.backends.local import FasterWhisperTranscriber
    from server.core.transcription import DecodeOptions

    backend = FasterWhisperTranscriber(
        model, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=2
    )
    backend.load()
    audios = [
        np.frombuffer(decode_file(SHARED / name), "<i2").astype(np.float32) / 32768
        for name in files()
    ]
    paused = DecodeOptions(language="en", ends_in_silence=True)
    whisper = backend._model
    batched = backend._batched
    assert whisper is not None and batched is not None

    def encoded(audio: np.ndarray):  # type: ignore[no-untyped-def]
        frames = batched._frames([(audio, paused)], backend.final_window_s)
        mel = whisper.feature_extractor(audio)[..., :-1]
        return whisper.encode(np.stack([batched._pad_or_trim(mel, frames)]))

    def final(audio: np.ndarray) -> None:
        backend.transcribe(audio, paused, final=True)

    def two_finals(audio: np.ndarray) -> None:  # two workers, each a final
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(final, [audio, audio]))

    return {
        "model": model,
        "threads": threads,
        "files": len(audios),
        "final_ms": median_ms(final, audios),
        "partial_ms": median_ms(lambda a: backend.transcribe(a, paused, final=False), audios),
        "encode_10s_ms": median_ms(encoded, audios),
        "two_finals_at_once_ms": median_ms(two_finals, audios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # the child process
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return 0
    rows = []
    for model in args.models.split(","):
        for threads in args.threads.split(","):
            child = [sys.executable, __file__, "--one", model, threads]
            output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]))
    command = (
        f"python benchmarks/threads_per_call.py --models {args.models} --threads {args.threads}"
    )
    out, commit, machine = save_json("threads_per_call", {"command": command, "rows": rows})
    print(f"written to {out.relative_to(ROOT)}")
    if args.record:
        append_results(
            [
                f"\n## Threads per model call ({date.today().isoformat()}, {commit})\n",
                f"Machine: {machine}. Command: `{command} --record`; JSON: "
                f"`{out.relative_to(ROOT)}`. {rows[0]['files']} English files of 2-9 s, int8, "
                "medians of two passes after a warm-up; each thread count in its own process.\n",
                "| model | threads per call | final (beam 5, 10 s window) | partial (greedy) "
                "| encoder alone | each of two finals at once |",
                "| --- | --- | --- | --- | --- | --- |",
                *(
                    f"| {r['model']} | {r['threads']} | {r['final_ms']:.0f} ms | "
                    f"{r['partial_ms']:.0f} ms | {r['encode_10s_ms']:.0f} ms | "
                    f"{r['two_finals_at_once_ms']:.0f} ms |"
                    for r in rows
                ),
            ]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
