"""Keywords (the session option ``keywords``, given to the model as hotwords): does a rare name
come out right, and does the model start saying the keywords on silence?

1. Names. Recordings of ../shared/audio whose references hold a rare name are streamed through
   ``/v1/stream`` of a real server, once without and once with the name as a keyword (plus two
   unrelated distractor names, as a meeting's keyword list would hold). Reported per model:
   recordings where the name is spelled right in the finals, and the WER, with and without.
2. Silence. Clips without speech (digital silence, low noise, room tone; 5 s each, 10 seeds)
   are given to the model directly with the keyword list, as the session sends audio that the
   VAD let through, and filtered as the session filters answers. Reported: clips whose text is
   not empty, with and without keywords, and how many of those consist of keywords.

Usage: python benchmarks/keywords.py [--models tiny.en,base] [--record]
JSON: benchmarks/results/keywords/<date>-<commit>.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import append_results, save_json  # noqa: E402
from remote_overhead import start_server, stop  # noqa: E402
from streaming_latency import SHARED, wer  # noqa: E402

from client.sources import decode_file  # noqa: E402
from client.stream import stream_pcm  # noqa: E402

# (file, the rare name as the reference spells it, the language to ask for)
NAMES = [
    ("en_ami_ES2011a_40-46s.wav", "Claflin", "en"),
    ("en_ls_1272-128104-0000.wav", "Quilter", "en"),
    ("en_librivox_sense_0870.wav", "Dashwood", "en"),
    ("es_mls_13697_11991_000000.opus", "Wentworth", "es"),
    ("fr_readalong_ej.m4a", "Joanis", "fr"),
    ("de_librivox_simplicissimus.mp3", "Grimmelshausen", "de"),
]
DISTRACTORS = ["Okonkwo", "Szczepański"]


def pcm(name: str) -> bytes:
    silence = b"\x00\x00" * 16_000
    return decode_file(SHARED / name, 16_000) + silence


def reference(name: str) -> str:
    for line in (SHARED / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["file"] == name:
            return str(entry["text"])
    raise KeyError(name)


def names(model: str) -> list[dict]:
    english_only = model.endswith(".en")
    server, port = start_server("--model", model, "--compute-type", "int8", "--admission", "false")
    rows = []
    try:
        for name, word, language in NAMES:
            if english_only and language != "en":
                continue
            row: dict = {"file": name, "name": word}
            for label, keywords in (("without", None), ("with", [word, *DISTRACTORS])):
                options: dict = {"language": language}
                if keywords:
                    options["keywords"] = ",".join(keywords)
                result = asyncio.run(
                    stream_pcm(
                        f"ws://127.0.0.1:{port}/v1/stream", pcm(name), speed=None, options=options
                    )
                )
                text = result.text
                row[label] = {
                    "right": bool(re.search(rf"\b{re.escape(word)}\b", text)),
                    "wer": round(wer(reference(name), text), 4) if language == "en" else None,
                    "text": text[:160],
                }
            rows.append(row)
    finally:
        stop(server)
    return rows


def silence(model: str, seeds: int = 10) -> dict:
    from server.backends.local import FasterWhisperTranscriber
    from server.core.quality import QualityThresholds, filter_transcription
    from server.core.transcription import DecodeOptions

    transcriber = FasterWhisperTranscriber(model, compute_type="int8")
    transcriber.load()
    keywords = ", ".join(word for _, word, _ in NAMES) + ", " + ", ".join(DISTRACTORS)
    keyword_words = set(re.sub(r"[^\w ]", "", keywords.lower()).split())
    counts = {
        "clips": 0,
        "without": 0,
        "with": 0,
        "with_only_keywords": 0,
        "texts_with": [],
        "dropped_as_keyword_echo": 0,  # what the keyword_echo rule caught
    }
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        clips = [
            np.zeros(80_000, np.float32),
            rng.normal(0, 0.003, 80_000).astype(np.float32),
            rng.normal(0, 0.0005, 80_000).astype(np.float32),
        ]
        for clip in clips if seed == 0 else clips[1:]:
            counts["clips"] += 1
            for label, hotwords in (("without", ""), ("with", keywords)):
                for final in (True, False):
                    options = DecodeOptions(language="en", hotwords=hotwords)
                    answer = transcriber.transcribe(clip, options, final=final)
                    text, dropped = filter_transcription(answer, QualityThresholds(), hotwords)
                    counts["dropped_as_keyword_echo"] += "keyword_echo" in (dropped or "")
                    if not text:
                        continue
                    counts[label] += 1
                    if label == "with":
                        counts["texts_with"].append(text)
                        words = set(re.sub(r"[^\w ]", "", text.lower()).split())
                        counts["with_only_keywords"] += bool(words and words <= keyword_words)
    counts["requests_per_label"] = counts["clips"] * 2
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    body: dict = {}
    for model in args.models.split(","):
        rows = names(model)
        body[model] = {
            "names": rows,
            "right_without": sum(row["without"]["right"] for row in rows),
            "right_with": sum(row["with"]["right"] for row in rows),
            "recordings": len(rows),
            "silence": silence(model),
        }
    print(json.dumps(body, indent=2, ensure_ascii=False))
    if args.record:
        record(args, body)
    return 0


def record(args: argparse.Namespace, body: dict) -> None:
    json_path, commit, machine = save_json("keywords", body)
    lines = [
        f"\n## Keywords: rare names and silence ({date.today()})\n",
        f"Machine: {machine}. Commit: {commit}. Command: `python benchmarks/keywords.py "
        f"--models {args.models} --record`. JSON: `{json_path.relative_to(ROOT)}`.\n",
        "| model | names right without / with keywords | silence clips with text without / "
        "with keywords (of requests) | of those, only keywords | dropped as keyword_echo |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model, figures in body.items():
        quiet = figures["silence"]
        lines.append(
            f"| {model} | {figures['right_without']} / {figures['right_with']} of "
            f"{figures['recordings']} | {quiet['without']} / {quiet['with']} of "
            f"{quiet['requests_per_label']} | {quiet['with_only_keywords']} | "
            f"{quiet['dropped_as_keyword_echo']} |"
        )
    append_results(lines)


if __name__ == "__main__":
    sys.exit(main())
