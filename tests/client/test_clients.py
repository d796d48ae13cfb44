"""The terminal clients against a real server: ``streamscribe mic`` with its microphone replaced
by a file (CI machines have no sound card), through a proxy that drops the connection
mid-utterance; the caption files it writes, parsed back; ``streamscribe type --dry-run``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import srt
import webvtt

from client.captions import CaptionFile
from client.spoken import Edit, SpokenCommands
from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.audio import bursts, pcm16, write_wav
from tests.server.cutting_proxy import CuttingProxy
from tests.support import ROOT, TIMEOUT_S, fake_settings, running_server

SCRIPT = ["first line of speech", "second line", "third and last"]
SPEECH = pcm16(bursts(300, 1500, 900, 1800, 900, 1200, 1200))


@pytest.fixture
def speech_file(tmp_path) -> Path:
    path = tmp_path / "speech.wav"
    write_wav(path, SPEECH)
    return path


def fake_server(script=SCRIPT):
    settings = fake_settings()
    return running_server(create_app(settings, ScriptedTranscriber(script, delay_s=0.05)))


def streamscribe(*args: str, timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamscribe", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class ProxyThread:
    """A ``CuttingProxy`` on a loop of its own, for a client running in a subprocess."""

    def __init__(self, target_port: int) -> None:
        self.proxy = CuttingProxy(target_port)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        self._ready.wait(TIMEOUT_S)
        return self.proxy

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT_S)

    def cut_after_audio(self, seconds: float) -> None:
        """Cut ``seconds`` after the client's websocket connects: with a real-time source that
        is that far into the audio, and never before the client has connected."""

        async def arm() -> None:
            self.proxy.cut_after_websocket(seconds)

        asyncio.run_coroutine_threadsafe(arm(), self.loop).result(TIMEOUT_S)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.proxy.__aenter__())
        self._ready.set()
        self.loop.run_forever()


def test_mic_client_survives_a_dropped_connection_and_writes_valid_captions(speech_file, tmp_path):
    with fake_server() as plain:
        uncut = streamscribe(
            "mic", "--source-file", str(speech_file), "--url", plain.ws_url,
            "--output", str(tmp_path / "uncut.srt"),
        )  # fmt: skip
    assert uncut.returncode == 0, uncut.stderr
    with fake_server() as target:
        proxied = ProxyThread(target.port)
        with proxied as proxy:
            proxied.cut_after_audio(2.4)  # inside the second utterance
            cut = streamscribe(
                "mic", "--source-file", str(speech_file), "--url", proxy.ws_url,
                "--output", str(tmp_path / "cut.srt"),
            )  # fmt: skip
    assert cut.returncode == 0, cut.stderr
    assert proxy.cuts == 1
    assert cut.stdout.splitlines() == uncut.stdout.splitlines() == SCRIPT
    uncut_cues = list(srt.parse((tmp_path / "uncut.srt").read_text()))
    cut_cues = list(srt.parse((tmp_path / "cut.srt").read_text()))
    assert [cue.content for cue in cut_cues] == [cue.content for cue in uncut_cues] == SCRIPT
    assert [cue.index for cue in cut_cues] == [1, 2, 3]


def test_the_caption_file_is_valid_while_the_session_runs(speech_file, tmp_path):
    output = tmp_path / "live.vtt"
    with fake_server() as server:
        command = [sys.executable, "-m", "streamscribe", "mic", "--source-file", str(speech_file)]
        process = subprocess.Popen(
            [*command, "--url", server.ws_url, "--output", str(output)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = []
        deadline = time.monotonic() + TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if output.exists():
                captions = webvtt.from_string(output.read_text())  # parses at every moment
                seen.append(len(captions))
            time.sleep(0.05)
        process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0
    assert 1 in seen and 2 in seen  # read back mid-session, between finals
    final = webvtt.read(str(output))
    assert [caption.text for caption in final] == SCRIPT
    assert final[0].start.startswith("00:00:0")


def test_caption_files_in_each_format(tmp_path):
    finals = [
        {"utterance_id": 2, "text": "second", "start_ms": 2500, "end_ms": 3100},
        {"utterance_id": 1, "text": "first words", "start_ms": 300, "end_ms": 1800},
        {"utterance_id": 2, "text": "second", "start_ms": 2500, "end_ms": 3100},  # replayed
        {"utterance_id": 3, "text": "", "start_ms": 4000, "end_ms": 4200},  # nothing said
    ]
    files = {kind: CaptionFile(tmp_path / f"captions.{kind}") for kind in ("srt", "vtt", "txt")}
    for final in finals:
        for file in files.values():
            file.add_final(final)
    cues = list(srt.parse((tmp_path / "captions.srt").read_text()))
    assert [(c.index, c.content, c.start.total_seconds()) for c in cues] == [
        (1, "first words", 0.3),
        (2, "second", 2.5),
    ]
    assert [c.text for c in webvtt.read(str(tmp_path / "captions.vtt"))] == [
        "first words",
        "second",
    ]
    assert (tmp_path / "captions.txt").read_text() == "first words\nsecond\n"
    with pytest.raises(ValueError, match=r"\.srt, \.vtt or \.txt"):
        CaptionFile(tmp_path / "captions.doc")


def test_voice_typing_dry_run_applies_spoken_commands(speech_file):
    script = ["hello comma world period", "new line this is next", "scratch that"]
    with fake_server(script) as server:
        completed = streamscribe(
            "type", "--dry-run", "--source-file", str(speech_file), "--url", server.ws_url
        )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [
        "[type] 'Hello, world.'",
        "[type] '\\nThis is next'",
        "[delete 13]",
    ]


@pytest.mark.parametrize(
    ("finals", "edits"),
    [
        (["hello comma world period"], [Edit("Hello, world.")]),
        # Whisper punctuates around the command words itself; ours wins, once.
        (["Hello, comma, how are you? Question mark."], [Edit("Hello, how are you?")]),
        (["done full stop new paragraph next"], [Edit("Done.\n\nNext")]),
        (["one", "two"], [Edit("One"), Edit(" two")]),
        (["first.", "second"], [Edit("First."), Edit(" Second")]),
        (["typo here", "scratch that"], [Edit("Typo here"), Edit(backspaces=9)]),
        (["wrong words scratch that right words"], [Edit("Right words")]),
        (["scratch that"], [Edit()]),
        (["exclamation point", "semicolon colon"], [Edit("!"), Edit(";:")]),
    ],
)
def test_spoken_command_rules(finals, edits):
    commands = SpokenCommands()
    assert [commands.receive_final(text) for text in finals] == edits


def test_literal_mode_types_the_words_as_said():
    commands = SpokenCommands(enabled=False)
    assert commands.receive_final("hello comma world") == Edit("Hello comma world")
