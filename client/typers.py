"""Where voice typing puts its text, chosen by name (``auto`` picks by platform):

name       how                                  where
---------  -----------------------------------  -------------------------------------
xdotool    ``xdotool type`` / ``key BackSpace``  X11
wtype      ``wtype`` / ``wtype -k BackSpace``    Wayland (wlroots compositors)
ydotool    ``ydotool type`` / ``key 14:1 14:0``  Wayland or console, via uinput
pynput     the keyboard library                  macOS, Windows, X11
clipboard  wl-copy, xclip, pbcopy or clip.exe    anywhere: paste it yourself
dry-run    prints what it would type             anywhere (tests, trying it out)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TextIO

from client.spoken import Edit

TYPER_NAMES = ("auto", "xdotool", "wtype", "ydotool", "pynput", "clipboard", "dry-run")


class TyperError(Exception):
    """The chosen way of typing is not available here."""


Typer = Callable[[Edit], None]


def make_typer(name: str, out: TextIO = sys.stdout) -> Typer:
    if name == "auto":
        name = _detect()
    if name == "dry-run":
        return lambda edit: _print_edit(edit, out)
    if name == "clipboard":
        return _clipboard_typer()
    if name == "pynput":
        return _pynput_typer()
    commands = {
        "xdotool": (["xdotool", "type", "--delay", "0", "--"], ["xdotool", "key", "BackSpace"]),
        "wtype": (["wtype", "--"], ["wtype", "-k", "BackSpace"]),
        "ydotool": (["ydotool", "type", "--"], ["ydotool", "key", "14:1", "14:0"]),
    }
    if name not in commands:
        raise TyperError(f"unknown typer {name!r}; choose one of {', '.join(TYPER_NAMES)}")
    type_command, backspace_command = commands[name]
    if shutil.which(type_command[0]) is None:
        raise TyperError(f"{type_command[0]} is not installed")

    def typer(edit: Edit) -> None:
        for _ in range(edit.backspaces):
            subprocess.run(backspace_command, check=False)
        if edit.text:
            subprocess.run([*type_command, edit.text], check=False)

    return typer


def _detect() -> str:
    if sys.platform in ("darwin", "win32"):
        return "pynput"
    if os.environ.get("WAYLAND_DISPLAY"):
        return "wtype" if shutil.which("wtype") else "ydotool"
    if os.environ.get("DISPLAY"):
        return "xdotool"
    raise TyperError("no display to type into; use --clipboard or --dry-run")


def _print_edit(edit: Edit, out: TextIO) -> None:
    if edit.backspaces:
        print(f"[delete {edit.backspaces}]", file=out, flush=True)
    if edit.text:
        print(f"[type] {edit.text!r}", file=out, flush=True)


def _clipboard_typer() -> Typer:
    for command in (["wl-copy"], ["xclip", "-selection", "clipboard"], ["pbcopy"], ["clip.exe"]):
        if shutil.which(command[0]):
            chosen = command
            break
    else:
        raise TyperError("no clipboard tool found (wl-copy, xclip, pbcopy or clip.exe)")

    def typer(edit: Edit) -> None:
        if edit.text:
            subprocess.run(chosen, input=edit.text.strip().encode(), check=False)

    return typer


def _pynput_typer() -> Typer:
    try:
        from pynput.keyboard import Controller, Key
    except ImportError as exc:
        raise TyperError("pynput is not installed: pip install 'streamscribe[typing]'") from exc
    keyboard: Any = Controller()

    def typer(edit: Edit) -> None:
        for _ in range(edit.backspaces):
            keyboard.press(Key.backspace)
            keyboard.release(Key.backspace)
        if edit.text:
            keyboard.type(edit.text)

    return typer
