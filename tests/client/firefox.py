"""Just enough of WebDriver BiDi to drive Debian's Firefox ESR from a test: Firefox speaks the
protocol itself (no geckodriver), over a websocket, and playwright cannot drive a stock Firefox.

Firefox's fake media devices give ``getUserMedia`` a generated tone without a permission prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets

PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # No sound server on CI machines: without an audio device an AudioContext never leaves
    # "suspended". Firefox's mock audio backend (used by its own tests) gives it a clock.
    "media.cubeb.force_mock_context": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


def firefox_path() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


class Firefox:
    def __init__(self, connection: Any, context: str) -> None:
        self._connection = connection
        self.context = context
        self.log_errors: list[str] = []
        self._ids = itertools.count(1)

    async def command(self, method: str, params: dict[str, Any], timeout_s: float = 30) -> Any:
        command_id = next(self._ids)
        await self._connection.send(
            json.dumps({"id": command_id, "method": method, "params": params})
        )
        deadline = time.monotonic() + timeout_s
        while True:
            raw = await asyncio.wait_for(self._connection.recv(), deadline - time.monotonic())
            message = json.loads(raw)
            if message.get("type") == "event":
                if message.get("method") == "log.entryAdded":
                    entry = message["params"]
                    if entry.get("level") == "error":
                        self.log_errors.append(entry.get("text", ""))
                continue
            if message.get("id") == command_id:
                if message.get("type") == "error":
                    raise RuntimeError(
                        f"{method}: {message.get('error')}: {message.get('message')}"
                    )
                return message["result"]

    async def navigate(self, url: str) -> None:
        await self.command(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def evaluate(self, expression: str) -> Any:
        result = await self.command(
            "script.evaluate",
            {
                "expression": expression,
                "target": {"context": self.context},
                "awaitPromise": True,
                "userActivation": True,
            },
        )
        if result.get("type") == "exception":
            raise RuntimeError(result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    async def click(self, selector: str) -> None:
        """A real pointer click (a user gesture, which starting audio needs), not el.click()."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = (round(item["value"]) for item in box)
        await self.command(
            "input.performActions",
            {
                "context": self.context,
                "actions": [
                    {
                        "type": "pointer",
                        "id": "mouse",
                        "actions": [
                            {"type": "pointerMove", "x": x, "y": y},
                            {"type": "pointerDown", "button": 0},
                            {"type": "pointerUp", "button": 0},
                        ],
                    }
                ],
            },
        )

    async def wait_for(self, expression: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {expression}")


@contextlib.asynccontextmanager
async def firefox(executable: str) -> AsyncIterator[Firefox]:
    with tempfile.TemporaryDirectory() as profile:
        prefs = "".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items())
        Path(profile, "user.js").write_text(prefs)
        port = _free_port()
        process = subprocess.Popen(
            [executable, "--headless", "--no-remote", "--profile", profile, *remote_flags(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            connection = await _connect(f"ws://127.0.0.1:{port}/session", process)
            async with connection:
                browser = Firefox(connection, "")
                await browser.command("session.new", {"capabilities": {}})
                await browser.command("session.subscribe", {"events": ["log.entryAdded"]})
                tree = await browser.command("browsingContext.getTree", {})
                browser.context = tree["contexts"][0]["context"]
                yield browser
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def _connect(url: str, process: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await websockets.connect(url, max_size=None)
        except (OSError, websockets.InvalidHandshake):
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def remote_flags(port: int) -> list[str]:
    return [f"--remote-debugging-port={port}", "about:blank"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
