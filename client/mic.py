"""Live captions from the microphone: ``streamscribe mic``.

Partials are shown in place in a dim style and finals line by line; ``--output`` keeps an SRT,
VTT or text file of the finals valid at every moment. A dropped connection is resumed without
losing the audio captured meanwhile (it queues, and goes once the session is back). Ctrl-C
ends the session cleanly: the last words still get their final.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from client.captions import CaptionFile
from client.microphone import MicrophoneError, list_devices, microphone_chunks, pick_rate
from client.session import ResumableSession, SessionFailed, paced_chunks
from client.sources import SourceError, decode_file
from client.stream import TerminalView, auth_headers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="server websocket")
    parser.add_argument("--device", help="input device number or name (see --list-devices)")
    parser.add_argument("--list-devices", action="store_true", help="list input devices")
    parser.add_argument("--language", help="ISO-639-1 code (default: detect)")
    parser.add_argument("--prompt", help="static prompt or glossary")
    parser.add_argument("--output", type=Path, help="also write the finals to FILE.srt|.vtt|.txt")
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line")
    parser.add_argument("--max-reconnects", type=int, default=100, help="before giving up")
    parser.add_argument(
        "--source-file",
        help="play this audio file at real-time pace instead of the microphone (for trying "
        "the client, and for tests: CI machines have no sound card)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        try:
            print("\n".join(list_devices()) or "no input devices")
        except MicrophoneError as exc:
            print(f"streamscribe mic: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        captions = CaptionFile(args.output) if args.output else None
    except (ValueError, OSError) as exc:
        print(f"streamscribe mic: {exc}", file=sys.stderr)
        return 2
    view = TerminalView(sys.stdout, sys.stderr, args.json)

    def on_event(event: dict[str, Any]) -> None:
        view(event)
        if captions is not None and event["type"] == "transcript.final":
            captions.add_final(event)

    try:
        return asyncio.run(capture(args, on_event))
    except (MicrophoneError, SourceError) as exc:
        print(f"streamscribe mic: {exc}", file=sys.stderr)
        return 2
    except SessionFailed as exc:
        print(f"streamscribe mic: {exc}", file=sys.stderr)
        return 1


async def capture(args: argparse.Namespace, on_event: Callable[[dict[str, Any]], None]) -> int:
    rate, chunks = open_audio(args)
    if not args.json:
        print("Listening… (Ctrl-C to stop)", file=sys.stderr)
    return await run_session(args, rate, chunks, on_event, max_reconnects=args.max_reconnects)


def open_audio(args: argparse.Namespace) -> tuple[int, AsyncIterator[bytes]]:
    """The sample rate and chunks of ``--source-file`` (at real-time pace) or the microphone."""
    if args.source_file:
        rate = 16_000
        pcm = decode_file(args.source_file, rate)
        return rate, paced_chunks(pcm, sample_rate_hz=rate, chunk_ms=100, speed=1.0)
    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    rate = pick_rate(device)
    return rate, microphone_chunks(device, rate)


async def run_session(
    args: argparse.Namespace,
    rate: int,
    chunks: AsyncIterator[bytes],
    on_event: Callable[[dict[str, Any]], None],
    *,
    max_reconnects: int,
) -> int:
    """Stream until the source ends or Ctrl-C, which ends the session cleanly: the words
    already said still get their finals."""
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    options: dict[str, Any] = {"sample_rate": rate}
    options.update({k: v for k, v in (("language", args.language), ("prompt", args.prompt)) if v})
    session = ResumableSession(
        args.url,
        until(chunks, stop),
        options=options,
        on_event=on_event,
        headers=auth_headers(),
        max_reconnects=max_reconnects,
    )
    result = await session.run()
    return 0 if result.of_type("session.closed") else 1


async def until(chunks: AsyncIterator[bytes], stop: asyncio.Event) -> AsyncIterator[bytes]:
    """The chunks, until the source ends or ``stop`` is set."""
    iterator = chunks.__aiter__()
    while not stop.is_set():
        next_chunk = asyncio.ensure_future(iterator.__anext__())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({next_chunk, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if next_chunk not in done:
            next_chunk.cancel()
            break
        try:
            yield next_chunk.result()
        except StopAsyncIteration:
            break
