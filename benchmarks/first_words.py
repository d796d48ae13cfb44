"""First words without a clock: how much speech a model needs before a partial shows text.

The session core is driven as the server drives it (webrtc VAD, the partial pacing with its
first-words chase, Whisper's thresholds), but every request is answered at once, so no decode
time delays the next one: until an utterance shows text a partial is asked every 100 ms of
audio. For each English file (one second of silence before it) it reports where the first
partial with text ended, counted from the speech onset webrtcvad finds in the file, and how
many partials it took. That is the floor of "onset to first partial" at any decode speed; the
decode time of that partial, timed here on its own, comes on top in a live session.

Each file is measured twice: in a fresh session, and in one that has already finalised the
previous file's words (its reference, carried as the prompt), as every utterance but the
first of a live session has.

Usage: python benchmarks/first_words.py [--models tiny.en,base] [--record]
JSON: benchmarks/results/first_words/<date>-<commit>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from agreement_replay import answered_at_once  # noqa: E402
from load import RATE_HZ, english_clips, percentile  # noqa: E402
from recording import append_results, save_json  # noqa: E402

from server.backends.local import build  # noqa: E402
from server.core.events import PartialText  # noqa: E402
from server.core.options import SessionOptions  # noqa: E402
from server.core.session import Session  # noqa: E402
from server.core.transcription import RequestKind, TranscribeRequest  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

CHUNK_BYTES = 640  # 20 ms messages


def first_words(
    transcriber: Any, audio: np.ndarray, onset: int, earlier_final: str = ""
) -> dict[str, Any] | None:
    """Stream ``audio`` through a session answering each request at once, until a partial
    shows text; ``None`` when none did. ``earlier_final``: text the session finalised before."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    session = Session("first-words", SessionOptions(language="en"))
    if earlier_final:
        session.prompt.receive_final(earlier_final, "en")
    partials: list[TranscribeRequest] = []
    for offset in range(0, len(pcm), CHUNK_BYTES):
        pending = list(session.receive_audio(pcm[offset : offset + CHUNK_BYTES]))
        while pending:
            event = pending.pop(0)
            if isinstance(event, PartialText) and event.text.strip():
                started = time.perf_counter()
                last = partials[-1]
                transcriber.transcribe(last.audio, last.options, final=False)
                return {
                    "speech_s": round((event.end_samples - onset) / RATE_HZ, 3),
                    "first_request_s": round((partials[0].end_samples - onset) / RATE_HZ, 3),
                    "partials": len(partials),
                    "decode_s": round(time.perf_counter() - started, 3),
                    "text": event.text,
                }
            if isinstance(event, TranscribeRequest):
                if event.kind is RequestKind.PARTIAL:
                    partials.append(event)
                answer = answered_at_once(
                    transcriber.transcribe(
                        event.audio, event.options, final=event.kind is RequestKind.FINAL
                    )
                )
                pending += session.receive_transcription(event, answer)
    return None


def measure(model: str) -> dict[str, Any]:
    transcriber = build(ServerSettings(model=model, compute_type="int8"))
    transcriber.load()
    clips = english_clips()
    figures = summarise([first_words_of(transcriber, clip) for clip in clips])
    figures["after_a_final"] = summarise(
        [first_words_of(transcriber, clip, clips[i - 1].reference) for i, clip in enumerate(clips)]
    )
    return figures


def first_words_of(transcriber: Any, clip: Any, earlier_final: str = "") -> dict[str, Any] | None:
    lead = np.zeros(RATE_HZ, np.float32)
    audio = np.concatenate([lead, clip.audio, np.zeros(RATE_HZ, np.float32)])
    onset = len(lead) + int(clip.pieces[0][0] * RATE_HZ)
    return first_words(transcriber, audio, onset, earlier_final)


def summarise(measured: list[dict[str, Any] | None]) -> dict[str, Any]:
    rows = [row for row in measured if row is not None]
    speech = [row["speech_s"] for row in rows]
    decode = [row["decode_s"] for row in rows]
    return {
        "utterances": len(rows),
        "speech_s_p50": percentile(speech, 50),
        "speech_s_p95": percentile(speech, 95),
        "first_request_s_p50": percentile([row["first_request_s"] for row in rows], 50),
        "partials_p50": statistics.median(row["partials"] for row in rows),
        "one_partial_enough": sum(row["partials"] == 1 for row in rows),
        "decode_s_p50": percentile(decode, 50),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    body: dict[str, Any] = {model: measure(model) for model in args.models.split(",")}
    for model, fresh in body.items():
        for session, figures in (("fresh", fresh), ("after a final", fresh["after_a_final"])):
            shown = {k: v for k, v in figures.items() if k not in ("rows", "after_a_final")}
            print(json.dumps({"model": model, "session": session, **shown}))
    if args.record:
        json_path, commit, machine = save_json("first_words", body)
        lines = [
            f"\n## First words without a clock ({date.today()})\n",
            f"Machine: {machine}. Commit: {commit}. Command: `python benchmarks/first_words.py "
            f"--models {args.models} --record`. JSON: `{json_path.relative_to(ROOT)}`.\n",
            "| model | session | utterances | speech before the first partial with text p50 / "
            "p95 | first request p50 | partials p50 | first partial had text | its decode p50 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for model, fresh in body.items():
            for session, figures in (("fresh", fresh), ("after a final", fresh["after_a_final"])):
                lines.append(
                    f"| {model} | {session} | {figures['utterances']} | "
                    f"{figures['speech_s_p50']:.2f} / {figures['speech_s_p95']:.2f} s | "
                    f"{figures['first_request_s_p50']:.2f} s | {figures['partials_p50']:g} | "
                    f"{figures['one_partial_enough']} | {figures['decode_s_p50']:.3f} s |"
                )
        append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
