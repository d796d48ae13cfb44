"""Where streaming WER comes from, without the clock: the session core replayed on the model.

The same stream as ``streaming_latency.py`` (the English files of ../shared/audio joined with
1-2 s pauses) is fed to the sans-I/O ``Session`` in 100 ms messages, and every request it
emits is answered at once by the local model, in order. No server, no queue, no timing noise:
the same code gives the same figures on every run, so a change to the partial/final policy can
be judged by its WER alone.

Three transcripts are scored against the manifest's references:

- ``streaming``: the session's finals, as a client sees them (stable words kept);
- ``free_finals``: the model's answers to the final requests as they are, before the stable
  words are put in front; the gap to ``streaming`` is what LocalAgreement's commitments cost;
- ``offline``: faster-whisper on each file whole (beam 5); the gap from ``free_finals`` is what
  cutting the stream into utterances and carrying the prompt cost.

It also lists the utterances whose final differs from its free decode.

Usage: python benchmarks/agreement_replay.py [--seeds 7 8 9] [--offline] [-v]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streaming_latency import build_stream, english_files, offline_text, wer  # noqa: E402

from server.backends.local import FasterWhisperTranscriber  # noqa: E402
from server.backends.models import resolve_model  # noqa: E402
from server.core.events import FinalText, RequestCancelled  # noqa: E402
from server.core.options import SessionOptions  # noqa: E402
from server.core.quality import filter_transcription  # noqa: E402
from server.core.session import Session  # noqa: E402
from server.core.transcription import RequestKind, TranscribeRequest, Transcription  # noqa: E402

MESSAGE_BYTES = 3200  # 100 ms of 16 kHz PCM16


def answered_at_once(answer: Transcription) -> Transcription:
    """``answer`` as if no time had passed (see ``replay``)."""
    return dataclasses.replace(answer, inference_ms=0.0, queue_ms=0.0)


def replay(
    session: Session, model: FasterWhisperTranscriber, pcm: bytes
) -> tuple[list[FinalText], dict[int, str]]:
    """Stream ``pcm`` through ``session``, answering each request at once; return the finals
    and, per utterance, the model's own answer to its final request."""
    finals: list[FinalText] = []
    free: dict[int, str] = {}
    queue: list[TranscribeRequest] = []
    cancelled: set[int] = set()

    def take(events: list) -> None:
        for event in events:
            if isinstance(event, TranscribeRequest):
                queue.append(event)
            elif isinstance(event, RequestCancelled):
                cancelled.add(event.request_id)
            elif isinstance(event, FinalText):
                finals.append(event)

    def drain() -> None:
        while queue:
            request = queue.pop(0)
            if request.request_id in cancelled:
                continue
            final = request.kind is RequestKind.FINAL
            # Answered at once: the pacing never sees this machine's decode time (it waits
            # out a slow model's turnaround), so the replay does not depend on it.
            answer = answered_at_once(model.transcribe(request.audio, request.options, final=final))
            if final:
                free[request.utterance_id] = filter_transcription(
                    answer, session.thresholds, prompt=request.options.prompt
                )[0]
            take(session.receive_transcription(request, answer))

    for offset in range(0, len(pcm), MESSAGE_BYTES):
        take(session.receive_audio(pcm[offset : offset + MESSAGE_BYTES]))
        drain()
    take(session.receive_end_of_stream())
    drain()
    return finals, free


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--beam-size", type=int, default=5, help="beam size of finals")
    parser.add_argument("--files", type=int, default=0, help="only the first N files")
    parser.add_argument("--offline", action="store_true", help="also score offline decoding")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[7], help="pause patterns (7: the benchmark's)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list differing finals")
    args = parser.parse_args(argv)

    entries = english_files()
    if args.files:
        entries = entries[: args.files]
    model = FasterWhisperTranscriber(
        args.model, device="cpu", compute_type="int8", cpu_threads=2,
        final_beam_size=args.beam_size,
    )  # fmt: skip
    model.load()
    started = time.perf_counter()
    reference = " ".join(entry["text"] for entry in entries)
    streaming_texts, free_texts, utterances = [], [], 0
    for seed in args.seeds:
        # Another seed, other pauses: the same speech cut and timed a little differently.
        session = Session("replay", SessionOptions(language="en"))
        finals, free = replay(session, model, build_stream(entries, seed))
        utterances += len(finals)
        streaming_texts.append(" ".join(final.text for final in finals))
        free_texts.append(" ".join(free.get(final.utterance_id, "") for final in finals))
        for final in finals:
            unprefixed = free.get(final.utterance_id, "")
            if args.verbose and final.text.strip() != unprefixed.strip():
                print(f"seed {seed} utterance {final.utterance_id}:")
                print(f"  final: {final.text}\n  free:  {unprefixed}")
    references = [reference] * len(args.seeds)
    figures: dict[str, object] = {
        "seeds": args.seeds,
        "utterances": utterances,
        "wer_streaming": round(wer(references, streaming_texts), 4),
        "wer_free_finals": round(wer(references, free_texts), 4),
        "wer_streaming_per_seed": [round(wer(reference, text), 4) for text in streaming_texts],
    }
    if args.offline:
        offline = offline_text(resolve_model(args.model), entries, beam_size=args.beam_size)
        figures["wer_offline"] = round(wer(reference, offline), 4)
    figures["replay_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
