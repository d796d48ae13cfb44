"""Voice typing: ``streamscribe type`` types each final into the focused application.

Spoken punctuation and commands ("comma", "new line", "scratch that", ...) are applied unless
``--literal``. With ``--hotkey`` the microphone is live only while the key is held
(``--mode push``) or between two presses (``--mode toggle``); while it is not, silence is sent,
so the utterance in progress ends and gets its final. ``--clipboard`` copies instead of typing;
``--dry-run`` prints what it would type.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from client.mic import open_audio, run_session
from client.microphone import MicrophoneError
from client.session import SessionFailed
from client.sources import SourceError
from client.spoken import SpokenCommands
from client.typers import TYPER_NAMES, TyperError, make_typer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream", help="server websocket")
    parser.add_argument("--device", help="input device number or name")
    parser.add_argument("--language", help="ISO-639-1 code (default: detect)")
    parser.add_argument("--prompt", help="static prompt or glossary (names, jargon)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--typer", choices=TYPER_NAMES, default="auto", help="how to type")
    output.add_argument("--clipboard", action="store_true", help="copy each final instead")
    output.add_argument("--dry-run", action="store_true", help="print what would be typed")
    parser.add_argument("--literal", action="store_true", help="no spoken punctuation/commands")
    parser.add_argument("--hotkey", help="e.g. '<ctrl>+<alt>+space' (needs pynput)")
    parser.add_argument("--mode", choices=("push", "toggle"), default="toggle")
    parser.add_argument("--source-file", help="a file at real-time pace instead of the mic")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name = "dry-run" if args.dry_run else "clipboard" if args.clipboard else args.typer
    try:
        typer = make_typer(name)
    except TyperError as exc:
        print(f"streamscribe type: {exc}", file=sys.stderr)
        return 2
    commands = SpokenCommands(enabled=not args.literal)

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "transcript.final":
            typer(commands.receive_final(event["text"]))
        elif event["type"] == "error":
            print(f"error [{event['code']}]: {event['message']}", file=sys.stderr)

    try:
        return asyncio.run(listen(args, on_event))
    except (MicrophoneError, SourceError, TyperError) as exc:
        print(f"streamscribe type: {exc}", file=sys.stderr)
        return 2
    except SessionFailed as exc:
        print(f"streamscribe type: {exc}", file=sys.stderr)
        return 1


async def listen(args: argparse.Namespace, on_event: Any) -> int:
    rate, chunks = open_audio(args)
    if args.hotkey:
        chunks = gated(chunks, Hotkey(args.hotkey, args.mode))
    return await run_session(args, rate, chunks, on_event, max_reconnects=100)


class Hotkey:
    """Whether the microphone is live, driven by a global hotkey (pynput)."""

    def __init__(self, combination: str, mode: str) -> None:
        try:
            from pynput import keyboard
        except ImportError as exc:
            raise TyperError("--hotkey needs pynput: pip install 'streamscribe[typing]'") from exc
        self.live = False
        keys = keyboard.HotKey.parse(combination)
        if mode == "toggle":
            hotkey = keyboard.HotKey(keys, self._toggle)
            listener: Any = None  # the callbacks need it; it exists before any key is pressed
            listener = keyboard.Listener(
                on_press=lambda key: hotkey.press(listener.canonical(key)),
                on_release=lambda key: hotkey.release(listener.canonical(key)),
            )
        else:
            held = set(keys)
            pressed: set[Any] = set()

            def on_press(key: Any) -> None:
                pressed.add(listener.canonical(key))
                self.live = held <= pressed

            def on_release(key: Any) -> None:
                pressed.discard(listener.canonical(key))
                self.live = held <= pressed

            listener = keyboard.Listener(on_press=on_press, on_release=on_release)
        listener.daemon = True
        listener.start()

    def _toggle(self) -> None:
        self.live = not self.live
        print("listening" if self.live else "paused", file=sys.stderr)


async def gated(chunks: AsyncIterator[bytes], hotkey: Hotkey) -> AsyncIterator[bytes]:
    """Audio while the hotkey says so; silence of the same length otherwise."""
    async for chunk in chunks:
        yield chunk if hotkey.live else bytes(len(chunk))
