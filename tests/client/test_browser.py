"""The browser page end to end in real headless Chromium: its fake microphone plays a real speech
file, the page streams it to a real server with tiny.en, and shows partials then finals; a
viewer in a second browser context shows the same finals; a dropped connection is resumed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from client.sources import decode_file
from server.settings import ServerSettings
from server.web.app import create_app
from tests.audio import write_wav
from tests.server.cutting_proxy import CuttingProxy
from tests.support import (
    ROOT,
    TIMEOUT_S,
    manifest,
    require,
    require_model,
    running_server,
    server_process,
    wer,
)
from tests.support import shared_file as shared

pytestmark = [pytest.mark.model, pytest.mark.slow]

SPEECH_FILE = "en_ls_1272-128104-0000.wav"
ARTIFACTS = Path(os.environ.get("STREAMSCRIBE_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(found is not None, "Chromium not installed (Debian: apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        require(False, "the playwright package is not installed (pip install playwright)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """The fake microphone plays a WAV file: the shared file, as 16 kHz mono, then silence."""
    pcm = decode_file(shared(SPEECH_FILE), 16_000) + b"\x00\x00" * 16_000 * 2
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    write_wav(path, pcm)
    return path


LONG_SPEECH = (SPEECH_FILE, "en_ls_1995-1837-0001.wav", "en_ljspeech_LJ001-0004.wav")


@pytest.fixture(scope="module")
def long_speech_wav(tmp_path_factory) -> Path:
    """Three files with pauses between them: about 23 s, several utterances."""
    pause = b"\x00\x00" * 24_000
    pcm = pause.join(decode_file(shared(name), 16_000) for name in LONG_SPEECH) + pause
    path = tmp_path_factory.mktemp("mic") / "long-speech.wav"
    write_wav(path, pcm)
    return path


@pytest.fixture(scope="module")
def server():
    require_model("tiny.en")
    settings = ServerSettings(model="tiny.en", compute_type="int8", beam_size=1)
    with running_server(create_app(settings)) as running:
        yield running


def reference() -> str:
    return next(e["text"] for e in manifest() if e["file"] == SPEECH_FILE)


@contextlib.contextmanager
def browser(speech_wav: Path, *, microphone: bool = True):
    from playwright.sync_api import sync_playwright

    args = ["--autoplay-policy=no-user-gesture-required"]
    if microphone:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
        ]
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=args
        )
        try:
            yield instance
        finally:
            instance.close()


def final_texts(page) -> list[str]:
    return [text.strip() for text in page.locator("#transcript .final").all_inner_texts()]


def run_capture(page, base_url: str) -> list[str]:
    """Start, wait for a partial and for the speech to be transcribed, stop; the finals."""
    page.goto(base_url + "/")
    page.select_option("#language", "en")
    page.click("#start")
    page.wait_for_selector("#status[data-state='live']", timeout=TIMEOUT_S * 1000)
    page.wait_for_function(
        "document.querySelector('#transcript .partial').textContent.trim().length > 0",
        timeout=TIMEOUT_S * 1000,
    )
    # The file is about 10 s; the finals of all of it are in once the text stops growing.
    page.wait_for_function(
        "document.querySelectorAll('#transcript .final').length >= 1",
        timeout=TIMEOUT_S * 1000,
    )
    page.wait_for_timeout(12_000)
    page.click("#stop")
    page.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
    return final_texts(page)


def test_the_page_captions_real_speech_and_a_viewer_sees_the_same_finals(server, speech_wav):
    ARTIFACTS.mkdir(exist_ok=True)
    with browser(speech_wav) as chromium:
        page = chromium.new_context().new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.http_url + "/")
        page.select_option("#language", "en")
        page.click("#start")
        page.wait_for_selector("#share:not([hidden])", timeout=TIMEOUT_S * 1000)
        share = page.get_attribute("#share", "href")
        viewer = chromium.new_context().new_page()
        viewer.goto(share)
        page.wait_for_function(
            "document.querySelector('#transcript .partial').textContent.trim().length > 0",
            timeout=TIMEOUT_S * 1000,
        )
        page.wait_for_timeout(12_000)
        page.click("#stop")
        page.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
        finals = final_texts(page)
        viewer.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
        seen_by_viewer = final_texts(viewer)
        srt = download(page, "#download-srt")
        page.screenshot(path=str(ARTIFACTS / "browser-page.png"))
        page.click("#captions")
        page.screenshot(path=str(ARTIFACTS / "browser-caption-view.png"))
        viewer.screenshot(path=str(ARTIFACTS / "browser-viewer.png"))
    assert not errors, errors
    text = " ".join(finals)
    assert wer(reference(), text) <= 0.3, text
    assert seen_by_viewer == finals
    assert re.match(r"1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n", srt), srt


def download(page, button: str) -> str:
    with page.expect_download() as pending:
        page.click(button)
    return Path(pending.value.path()).read_text()


def test_a_late_viewer_gets_the_finals_so_far(server, speech_wav):
    """A viewer who opens the share link after finals exist gets those first, then the rest
    live: at the end it shows the speaker's transcript, every final once."""
    with browser(speech_wav) as chromium:
        page = chromium.new_context().new_page()
        page.goto(server.http_url + "/")
        page.select_option("#language", "en")
        page.click("#start")
        page.wait_for_function(
            "document.querySelectorAll('#transcript .final').length >= 1",
            timeout=TIMEOUT_S * 1000,
        )
        finals_before_viewer = final_texts(page)
        viewer = chromium.new_context().new_page()
        viewer.goto(page.get_attribute("#share", "href"))
        so_far = len(finals_before_viewer)
        viewer.wait_for_function(
            f"document.querySelectorAll('#transcript .final').length >= {so_far}",
            timeout=TIMEOUT_S * 1000,
        )
        page.wait_for_timeout(8_000)  # the rest of the file is spoken into the microphone
        page.click("#stop")
        page.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
        viewer.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
        finals, watched = final_texts(page), final_texts(viewer)
    assert finals_before_viewer and finals[: len(finals_before_viewer)] == finals_before_viewer
    assert watched == finals


def test_a_denied_microphone_gets_a_clear_message(server, speech_wav):
    with browser(speech_wav, microphone=False) as chromium:
        context = chromium.new_context(permissions=[])
        page = context.new_page()
        page.goto(server.http_url + "/")
        page.click("#start")
        page.wait_for_selector("#status[data-state='error']", timeout=TIMEOUT_S * 1000)
        assert (
            "denied" in page.inner_text("#status")
            or "microphone" in page.inner_text("#status").lower()
        )


async def arm(proxy: CuttingProxy, audio_s: float) -> None:
    """Cut the proxy's connections ``audio_s`` after the page's websocket connects."""
    proxy.cut_after_websocket(audio_s)


@contextlib.contextmanager
def proxy_thread(target_port: int):
    """A ``CuttingProxy`` on an event loop of its own; yields (proxy, loop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    proxy = CuttingProxy(target_port)

    def serve_proxy() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.__aenter__())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_proxy, daemon=True)
    thread.start()
    ready.wait(TIMEOUT_S)
    try:
        yield proxy, loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT_S)


def final_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "#transcript .final", "nodes => nodes.map(n => n.dataset.utteranceId)"
    )


def test_the_page_resumes_after_the_connection_drops(server, speech_wav):
    """The page is served through a proxy that cuts every connection mid-speech; the page
    reconnects, resumes, and its transcript has no gap and no duplicate."""
    with proxy_thread(server.port) as (proxy, loop), browser(speech_wav) as chromium:
        page = chromium.new_context().new_page()
        page.goto(f"http://127.0.0.1:{proxy.port}/")
        page.select_option("#language", "en")
        asyncio.run_coroutine_threadsafe(arm(proxy, 4.0), loop).result(TIMEOUT_S)
        page.click("#start")  # the cut comes 4 s into the audio sent: mid-speech
        page.wait_for_selector("#status[data-state='connecting']", timeout=TIMEOUT_S * 1000)
        page.wait_for_selector("#status[data-state='live']", timeout=TIMEOUT_S * 1000)
        page.wait_for_timeout(10_000)
        page.click("#stop")
        page.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
        finals, ids = final_texts(page), final_ids(page)
    assert proxy.cuts == 1
    assert len(ids) == len(set(ids))
    assert wer(reference(), " ".join(finals)) <= 0.3, finals


def test_the_page_survives_a_dead_server(long_speech_wav):
    """Mid-speech the server is killed and the balancer (a proxy) sends the page to another
    server: the page opens a new session there and the transcript goes on, every final once."""
    require_model("tiny.en")
    flags = ("--model", "tiny.en", "--compute-type", "int8", "--beam-size", "1")
    first, first_port = server_process(*flags, capture=False)
    second, second_port = server_process(*flags, capture=False)
    try:
        with proxy_thread(first_port) as (proxy, _), browser(long_speech_wav) as chromium:
            page = chromium.new_context().new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{proxy.port}/")
            page.select_option("#language", "en")
            page.evaluate("window.startedAt = performance.now()")
            page.click("#start")
            page.wait_for_function(
                "document.querySelectorAll('#transcript .final').length >= 1",
                timeout=TIMEOUT_S * 1000,
            )
            before = len(final_ids(page))
            proxy.target_port = second_port  # the balancer's next pick
            first.kill()
            first.wait(TIMEOUT_S)
            page.wait_for_function(
                f"document.querySelectorAll('#transcript .final').length > {before}",
                timeout=TIMEOUT_S * 2000,
            )
            page.wait_for_function(  # the microphone has said all three files by then
                "performance.now() - window.startedAt > 26000", timeout=TIMEOUT_S * 2000
            )
            page.click("#stop")
            page.wait_for_selector("#status[data-state='closed']", timeout=TIMEOUT_S * 1000)
            finals, ids = final_texts(page), final_ids(page)
    finally:
        for process in (first, second):
            process.kill()
            process.wait()
    assert not errors, errors
    assert len(ids) == len(set(ids)) and len(ids) > before
    texts = {entry["file"]: entry["text"] for entry in manifest()}
    spoken = " ".join(texts[name] for name in LONG_SPEECH)
    assert wer(spoken, " ".join(finals)) <= 0.3, finals
