"""What a partial costs, and says, by encoder window: faster-whisper's transcribe() (which pads
every request to Whisper's 30 s) against CTranslate2's encoder and decoder called directly on
a window of 30, 10 or 5 s (at least the audio and a second more).

The first 1, 2, 3 and 4 s of five English files (what partials hear early in an utterance),
greedy, int8, two threads, one call at a time. Reports the median time per call and how many
of the direct calls' texts differ from transcribe()'s after normalisation (word error rate
between them).

Usage: python benchmarks/partial_window.py [--model tiny.en] [--record]
Writes the JSON behind the figures to benchmarks/results/partial_window/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.streaming_latency import wer  # noqa: E402
from client.sources import decode_file  # noqa: E402

SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
FILES = [
    "en_ls_1272-128104-0000.wav",
    "en_jfk.flac",
    "en_librivox_sense_0880.wav",
    "en_ljspeech_LJ050-0131.wav",
    "en_ls_1995-1837-0001.wav",
]
WINDOWS_S = (30, 10, 5)
RESULTS = ROOT / "benchmarks" / "results" / "partial_window"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    from server.backends.models import resolve_model

    model = WhisperModel(
        resolve_model(args.model), device="cpu", compute_type="int8", cpu_threads=2
    )
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, "transcribe", "en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)

    def direct(audio: np.ndarray, window_s: float) -> str:
        frames = int(max(window_s, len(audio) / 16000 + 1) * 100)
        features = pad_or_trim(model.feature_extractor(audio)[..., :-1], min(frames, 3000))
        encoded = model.encode(features)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=448,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return str(tokenizer.decode(result[0].sequences_ids[0])).strip()

    rows = []
    for name in FILES:
        samples = np.frombuffer(decode_file(SHARED / name), "<i2").astype(np.float32) / 32768
        for seconds in (1.0, 2.0, 3.0, 4.0):
            audio = samples[: int(16000 * seconds)]
            started = time.perf_counter()
            segments, _ = model.transcribe(
                audio,
                language="en",
                beam_size=1,
                without_timestamps=True,
                vad_filter=False,
                condition_on_previous_text=False,
                temperature=0.0,
            )
            text = " ".join(segment.text.strip() for segment in segments)
            row = {
                "file": name,
                "seconds": seconds,
                "transcribe_text": text,
                "transcribe_ms": round((time.perf_counter() - started) * 1000),
            }
            for window in WINDOWS_S:
                started = time.perf_counter()
                row[f"window_{window}_text"] = direct(audio, window)
                row[f"window_{window}_ms"] = round((time.perf_counter() - started) * 1000)
            rows.append(row)
    references = [row["transcribe_text"] or "-" for row in rows]
    figures: dict = {
        "model": args.model,
        "calls": len(rows),
        "transcribe_ms_p50": float(np.median([r["transcribe_ms"] for r in rows])),
    }
    for window in WINDOWS_S:
        figures[f"window_{window}_ms_p50"] = float(
            np.median([r[f"window_{window}_ms"] for r in rows])
        )
        figures[f"window_{window}_wer_vs_transcribe"] = round(
            wer(references, [r[f"window_{window}_text"] or "-" for r in rows]), 4
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.model}-{date.today().isoformat()}-{commit}.json"
    out.write_text(
        json.dumps(
            {"figures": figures, "machine": machine, "commit": commit, "rows": rows}, indent=2
        )
    )
    print(json.dumps(figures, indent=2))
    if args.record:
        with (ROOT / "benchmarks" / "RESULTS.md").open("a") as results:
            results.write(
                f"\n## Partial cost by encoder window, {args.model} ({date.today().isoformat()}, "
                f"{commit})\n\nMachine: {machine}. Command: `python benchmarks/partial_window.py "
                f"--model {args.model}`; JSON: `{out.relative_to(ROOT)}`. {len(rows)} greedy "
                "calls on the first 1-4 s of five English files.\n\n"
                "| call | median ms | WER against transcribe()'s text |\n| --- | --- | --- |\n"
                f"| faster-whisper transcribe() (30 s) | {figures['transcribe_ms_p50']:.0f} | |\n"
                + "".join(
                    f"| encoder + decoder, {w} s window | {figures[f'window_{w}_ms_p50']:.0f} | "
                    f"{figures[f'window_{w}_wer_vs_transcribe']:.1%} |\n"
                    for w in WINDOWS_S
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
