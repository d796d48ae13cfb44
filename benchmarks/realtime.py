"""OpenAI Realtime protocol benchmark: /v1/realtime beside /v1/stream on the same audio.

The English files of ../shared/audio up to 15 s, joined with 1.5 s pauses into one 24 kHz
stream, sent at real-time pace in 20 ms messages, first to /v1/realtime (the official openai
SDK, server VAD) and then to /v1/stream (StreamScribe's own client), one after the other on one
server started in a subprocess. Speech onset and end come from the audio itself (the first and
last 10 ms frame of each file above -40 dB of its peak), the same for both protocols:

- first text after onset: /v1/realtime's first delta (stable words); /v1/stream's first
  partial, and its first stable text (what a delta carries), per file, p50/p95
- final after speech end: `completed` / `transcript.final` of the file's last item, p50/p95
- WER of each protocol against the references
- deltas before speech_stopped: the share of items over 2 s of speech that had one
- OpenAI's documented behaviour for gpt-4o-transcribe (deltas only after speech ends) puts its
  first delta at least at speech end plus its silence window (500 ms): that bound, per file,
  is reported beside ours. It is derived from the documentation, not measured.

Usage: python benchmarks/realtime.py [--model tiny.en] [--record]
Writes the JSON behind the figures to benchmarks/results/realtime/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.streaming_latency import free_port, percentile, wer  # noqa: E402
from client.sources import decode_file  # noqa: E402
from client.stream import stream_pcm  # noqa: E402

SHARED = Path(os.environ.get("STREAMSCRIBE_SHARED_AUDIO", ROOT.parent / "shared" / "audio"))
RATE = 24_000
PAUSE_S = 1.5
CHUNK_MS = 20
OPENAI_SILENCE_MS = 500
RESULTS = ROOT / "benchmarks" / "results" / "realtime"


def files() -> list[dict]:
    entries = [json.loads(line) for line in (SHARED / "manifest.jsonl").read_text().splitlines()]
    return [e for e in entries if e["language"] == "en" and e["duration_s"] <= 15]


def voiced_span(samples: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame above -40 dB of the file's loudest frame, in seconds."""
    frame = RATE // 100
    frames = samples[: len(samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1)) + 1e-9
    voiced = np.flatnonzero(20 * np.log10(rms / rms.max()) > -40)
    return voiced[0] / 100, (voiced[-1] + 1) / 100


def build_stream(entries: list[dict]) -> tuple[bytes, list[dict]]:
    """The stream, and each file's span in it: start, voiced onset and end, in seconds."""
    parts, spans, position = [], [], 0.0
    for entry in entries:
        samples = np.frombuffer(decode_file(SHARED / entry["file"], RATE), "<i2")
        onset, end = voiced_span(samples)
        spans.append(
            {
                "file": entry["file"],
                "start": position,
                "onset": position + onset,
                "end": position + end,
                "text": entry["text"],
            }
        )
        parts += [samples, np.zeros(int(RATE * PAUSE_S), dtype="<i2")]
        position += len(samples) / RATE + PAUSE_S
    return np.concatenate(parts).tobytes(), spans


async def paced(pcm: bytes, send) -> float:
    """Send 20 ms pieces at real-time pace; returns the wall time the stream started."""
    loop = asyncio.get_running_loop()
    size = RATE * 2 * CHUNK_MS // 1000
    started = loop.time()
    for index, start in enumerate(range(0, len(pcm), size)):
        await send(pcm[start : start + size])
        await asyncio.sleep(max(0.0, started + (index + 1) * CHUNK_MS / 1000 - loop.time()))
    return started


async def realtime_run(port: int, pcm: bytes) -> tuple[float, list[dict]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://127.0.0.1:{port}/v1")
    events: list[dict] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.recv()
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": RATE},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {"type": "server_vad"},
                    }
                },
            }
        )
        await connection.recv()
        loop = asyncio.get_running_loop()

        async def listen() -> None:
            async for event in connection:
                events.append({**event.model_dump(), "received_at": loop.time()})

        listener = asyncio.create_task(listen())

        async def send(piece: bytes) -> None:
            await connection.input_audio_buffer.append(audio=base64.b64encode(piece).decode())

        started = await paced(pcm, send)
        await connection.input_audio_buffer.commit()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            committed = sum(e["type"] == "input_audio_buffer.committed" for e in events)
            done = sum(e["type"].endswith("transcription.completed") for e in events)
            if committed and done >= committed:
                break
            await asyncio.sleep(0.05)  # polling the listener's list, not synchronising
        listener.cancel()
    return started, events


def per_file(spans: list[dict], items: list[dict]) -> list[dict]:
    """Each item (start_s, first_text_at, final_at, text) to the file it starts in."""
    rows = []
    for index, span in enumerate(spans):
        until = spans[index + 1]["start"] if index + 1 < len(spans) else float("inf")
        mine = [item for item in items if span["start"] - 0.35 <= item["start_s"] < until - 0.35]
        texts = [item["first_text_at"] for item in mine if item["first_text_at"] is not None]
        rows.append(
            {
                "file": span["file"],
                "speech_s": round(span["end"] - span["onset"], 2),
                "first_text_after_onset_ms": round((min(texts) - span["onset"]) * 1000)
                if texts
                else None,
                "final_after_end_ms": round((mine[-1]["final_at"] - span["end"]) * 1000)
                if mine and mine[-1]["final_at"] is not None
                else None,
                "text": " ".join(item["text"] for item in mine if item["text"]),
            }
        )
    return rows


def realtime_items(started: float, events: list[dict]) -> tuple[list[dict], list[dict]]:
    """Each item's times and text, and for every item over 2 s of speech whether a delta came
    before its ``speech_stopped`` (with the first delta's text, to see what a miss was)."""
    items, long_items = [], []
    starts = {e["item_id"]: e for e in events if e["type"] == "input_audio_buffer.speech_started"}
    for item_id, start in starts.items():
        deltas = [e for e in events if e["type"].endswith(".delta") and e["item_id"] == item_id]
        done = next(
            (e for e in events if e["type"].endswith(".completed") and e["item_id"] == item_id),
            None,
        )
        stop = next(
            (
                e
                for e in events
                if e["type"] == "input_audio_buffer.speech_stopped" and e["item_id"] == item_id
            ),
            None,
        )
        # The item's span less the 300 ms pre-roll and the 200 ms end padding.
        speech_ms = stop["audio_end_ms"] - start["audio_start_ms"] - 500 if stop else 0
        if speech_ms > 2000:
            long_items.append(
                {
                    "item_id": item_id,
                    "speech_ms": speech_ms,
                    "delta_before_speech_stopped": bool(deltas)
                    and deltas[0]["received_at"] < stop["received_at"],
                    "first_delta": deltas[0]["delta"] if deltas else None,
                    "transcript": done["transcript"] if done else None,
                }
            )
        items.append(
            {
                "start_s": start["audio_start_ms"] / 1000,
                "first_text_at": deltas[0]["received_at"] - started if deltas else None,
                "final_at": done["received_at"] - started if done else None,
                "text": done["transcript"] if done else "",
            }
        )
    return items, long_items


def stream_items(result, *, stable: bool) -> list[dict]:
    items = []
    for start in result.of_type("speech.started"):
        uid = start["utterance_id"]
        partials = [
            p
            for p in result.of_type("transcript.partial")
            if p["utterance_id"] == uid and (p["stable_text"] if stable else p["text"])
        ]
        final = next((f for f in result.finals if f["utterance_id"] == uid), None)
        items.append(
            {
                "start_s": start["start_ms"] / 1000,
                "first_text_at": partials[0]["received_at"] - result.started_at
                if partials
                else None,
                "final_at": final["received_at"] - result.started_at if final else None,
                "text": final["text"] if final else "",
            }
        )
    return items


def summary(rows: list[dict], reference: str) -> dict:
    first = [
        r["first_text_after_onset_ms"] for r in rows if r["first_text_after_onset_ms"] is not None
    ]
    final = [r["final_after_end_ms"] for r in rows if r["final_after_end_ms"] is not None]
    return {
        "first_text_p50_ms": round(percentile(first, 50)),
        "first_text_p95_ms": round(percentile(first, 95)),
        "files_without_early_text": len(rows) - len(first),
        "final_after_end_p50_ms": round(percentile(final, 50)),
        "final_after_end_p95_ms": round(percentile(final, 95)),
        "wer": round(wer(reference, " ".join(r["text"] for r in rows)), 4),
    }


def serve(model: str, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "streamscribe",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--compute-type",
        "int8",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling the readiness probe
    server.kill()
    raise SystemExit("server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    parser.add_argument(
        "--realtime-only",
        action="store_true",
        help="only the /v1/realtime run; print its items over 2 s and write nothing",
    )
    args = parser.parse_args(argv)
    entries = files()
    pcm, spans = build_stream(entries)
    reference = " ".join(span["text"] for span in spans)
    port = free_port()
    server = serve(args.model, port)
    try:
        started, events = asyncio.run(realtime_run(port, pcm))
        if args.realtime_only:
            print(json.dumps(realtime_items(started, events)[1], indent=2))
            return 0
        result = asyncio.run(
            stream_pcm(
                f"ws://127.0.0.1:{port}/v1/stream",
                pcm,
                sample_rate_hz=RATE,
                chunk_ms=CHUNK_MS,
                options={"language": "en"},
            )
        )
    finally:
        server.terminate()
        server.wait(30)
    items, long_items = realtime_items(started, events)
    share_before_stop = (
        sum(item["delta_before_speech_stopped"] for item in long_items) / len(long_items)
        if long_items
        else float("nan")
    )
    realtime_rows = per_file(spans, items)
    stream_rows = per_file(spans, stream_items(result, stable=False))
    stable_rows = per_file(spans, stream_items(result, stable=True))
    openai_bound = [
        round((span["end"] - span["onset"]) * 1000) + OPENAI_SILENCE_MS for span in spans
    ]
    figures = {
        "model": args.model,
        "files": len(spans),
        "audio_s": round(len(pcm) / 2 / RATE, 1),
        "realtime": summary(realtime_rows, reference),
        "realtime_deltas_before_speech_stopped_share": round(share_before_stop, 3),
        "stream_first_partial": summary(stream_rows, reference),
        "stream_first_stable_text": summary(stable_rows, reference),
        "openai_documented_first_delta_at_least_p50_ms": round(percentile(openai_bound, 50)),
        "openai_documented_first_delta_at_least_p95_ms": round(percentile(openai_bound, 95)),
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.model}-{date.today().isoformat()}-{commit}-{int(time.time())}.json"
    out.write_text(
        json.dumps(
            {
                "figures": figures,
                "machine": machine,
                "commit": commit,
                "command": f"python benchmarks/realtime.py --model {args.model}",
                "realtime_files": realtime_rows,
                "realtime_items_over_2_s": long_items,
                "stream_files": stream_rows,
                "stream_stable_files": stable_rows,
            },
            indent=2,
        )
    )
    print(json.dumps(figures, indent=2))
    print(f"written to {out.relative_to(ROOT)}")
    if args.record:
        record(figures, machine, commit, out)
    return 0


def row(name: str, figures: dict) -> str:
    first = f"{figures['first_text_p50_ms']} / {figures['first_text_p95_ms']} ms"
    final = f"{figures['final_after_end_p50_ms']} / {figures['final_after_end_p95_ms']} ms"
    return f"| {name} | {first} | {final} | {figures['wer']:.2%} |"


def record(figures: dict, machine: str, commit: str, out: Path) -> None:
    rt, st, stable = (
        figures["realtime"],
        figures["stream_first_partial"],
        figures["stream_first_stable_text"],
    )
    lines = [
        f"\n## OpenAI Realtime protocol beside /v1/stream, {figures['model']} "
        f"({date.today().isoformat()}, {commit})\n",
        f"Machine: {machine}. Command: `python benchmarks/realtime.py --model {figures['model']}`;"
        f" JSON: `{out.relative_to(ROOT)}`. {figures['files']} English files, "
        f"{figures['audio_s']} s, real time, 20 ms messages, one session at a time.\n",
        "| | first text after onset p50 / p95 | final after speech end p50 / p95 | WER |",
        "| --- | --- | --- | --- |",
        row("/v1/realtime, first delta", rt),
        row("/v1/stream, first partial", st),
        f"| /v1/stream, first stable text | {stable['first_text_p50_ms']} / "
        f"{stable['first_text_p95_ms']} ms | | |",
        f"| OpenAI gpt-4o-transcribe, documented (not measured) | at least "
        f"{figures['openai_documented_first_delta_at_least_p50_ms']} / "
        f"{figures['openai_documented_first_delta_at_least_p95_ms']} ms | | |",
        "",
        f"Items over 2 s of speech with a delta before `speech_stopped`: "
        f"{figures['realtime_deltas_before_speech_stopped_share']:.0%}.",
        "",
    ]
    with (ROOT / "benchmarks" / "RESULTS.md").open("a") as results:
        results.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
