"""The page in a meeting room, in real headless Chromium: Alice's browser makes a room and
speaks into its fake microphone, Bob's browser (another fake microphone, another recording)
opens her invite link and speaks too; both pages and a viewer on the room's viewer link show
the one shared transcript, each final labelled with its speaker and start time."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from client.sources import decode_file
from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import write_wav
from tests.client.test_browser import chromium_path
from tests.support import (
    TIMEOUT_S,
    references,
    require_model,
    running_server,
    shared_file,
    wer,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]

ALICE = "en_ls_1272-128104-0000.wav"
BOB = "en_librivox_sense_0880.wav"
WAIT_MS = TIMEOUT_S * 1000


def microphone_file(tmp_path: Path, name: str) -> Path:
    """A second of silence, the recording, then silence: what the fake microphone plays."""
    silence = b"\x00\x00" * 16_000
    path = tmp_path / f"{name}.wav"
    write_wav(path, silence + decode_file(shared_file(name), 16_000) + silence * 3)
    return path


@pytest.fixture(scope="module")
def server():
    require_model("tiny.en")
    settings = ServerSettings(
        model="tiny.en", compute_type="int8", beam_size=1, final_latency_budget_ms=60_000
    )
    with running_server(create_app(settings)) as running:
        yield running


@contextlib.contextmanager
def browsers(*microphones: Path):
    """One Chromium per fake microphone (the file is a launch flag), under one playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = [
            playwright.chromium.launch(
                executable_path=chromium_path(),
                headless=True,
                args=[
                    "--autoplay-policy=no-user-gesture-required",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={microphone}%noloop",
                ],
            )
            for microphone in microphones
        ]
        try:
            yield launched
        finally:
            for instance in launched:
                instance.close()


def room_lines(page) -> list[tuple[str, str, str]]:
    """(speaker, start time, text) of each final on the page, top to bottom."""
    return page.eval_on_selector_all(
        "#transcript .room-final",
        "lines => lines.map(l => [l.dataset.speaker, l.querySelector('time').textContent, "
        "l.querySelector('.text').textContent])",
    )


def wait_for_both(page) -> None:
    page.wait_for_function(
        "['Alice', 'Bob'].every(name => document.querySelector("
        "`#transcript .room-final[data-speaker='${name}']`))",
        timeout=WAIT_MS * 2,
    )


def test_two_browsers_speak_in_one_room_and_a_viewer_follows(server, tmp_path):
    microphones = (microphone_file(tmp_path, ALICE), microphone_file(tmp_path, BOB))
    with browsers(*microphones) as (alice_browser, bob_browser):
        alice = alice_browser.new_context().new_page()
        errors: list[str] = []
        alice.on("pageerror", lambda error: errors.append(str(error)))
        alice.goto(server.http_url + "/")
        alice.fill("#new-room-name", "Standup")
        alice.click("#new-room")
        alice.wait_for_selector("#room-bar:not([hidden])", timeout=WAIT_MS)
        invite = alice.get_attribute("#room-invite", "href")
        watch = alice.get_attribute("#room-watch", "href")
        alice.fill("#speaker", "Alice")
        alice.select_option("#language", "en")
        alice.click("#start")
        alice.wait_for_function("document.querySelector('#level').value > 0", timeout=WAIT_MS)

        bob = bob_browser.new_context().new_page()
        bob.on("pageerror", lambda error: errors.append(str(error)))
        bob.goto(invite)
        bob.fill("#speaker", "Bob")
        bob.select_option("#language", "en")
        bob.click("#start")

        viewer = alice_browser.new_context().new_page()
        viewer.goto(watch)
        for page in (alice, bob, viewer):
            wait_for_both(page)
        # Both recordings are over once their finals are in; what each page shows is final.
        alice.click("#stop")
        bob.click("#stop")
        shown = {name: room_lines(page) for name, page in (("alice", alice), ("bob", bob))}
        shown["viewer"] = room_lines(viewer)
        vtt = alice.evaluate(
            "room => fetch(`/v1/rooms/${room.id}/transcript?format=vtt&watch_token=${room.token}`)"
            ".then(r => r.text())",
            {
                "id": invite.split("room_id=")[1].split("&")[0],
                "token": watch.split("watch_token=")[1],
            },
        )
    assert not errors, errors
    assert shown["alice"] == shown["bob"] == shown["viewer"]
    lines = shown["viewer"]
    for speaker, name in (("Alice", ALICE), ("Bob", BOB)):
        text = " ".join(line[2] for line in lines if line[0] == speaker)
        assert wer(references([name]), text) <= 0.3, (speaker, text)
    assert all(time.count(":") == 1 for _, time, _ in lines)
    assert "<v Alice>" in vtt and "<v Bob>" in vtt
