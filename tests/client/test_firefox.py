"""The browser page in Firefox ESR (driven over WebDriver BiDi, see firefox.py). Firefox cannot
capture into a 16 kHz AudioContext, so this is where the page's own resampling runs: the audio
the server receives must last as long as the time the microphone was live."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.backends.fake import ScriptedTranscriber
from server.web.app import create_app
from tests.client.firefox import firefox, firefox_path
from tests.support import TIMEOUT_S, fake_settings, require, running_server


def audio_seconds(base_url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(base_url + "/metrics").text):
        for sample in family.samples:
            if sample.name == "streamscribe_audio_seconds_total":
                return sample.value
    return 0.0


def test_the_page_streams_16k_audio_from_firefox():
    executable = firefox_path()
    require(executable is not None, "Firefox not installed (Debian: apt-get install firefox-esr)")
    assert executable is not None
    settings = fake_settings()
    with running_server(create_app(settings, ScriptedTranscriber(["tone"]))) as server:

        async def scenario() -> tuple[float, float, str, list[str]]:
            async with firefox(executable) as browser:
                await browser.navigate(server.http_url + "/")
                await browser.click("#start")
                await browser.wait_for(
                    "document.querySelector('#status').dataset.state === 'live'", TIMEOUT_S
                )
                before, started = audio_seconds(server.http_url), time.monotonic()
                received = 0.0
                while received < 3.0 and time.monotonic() - started < TIMEOUT_S:
                    await asyncio.sleep(0.1)  # polling the server's counter for 3 s of audio
                    received = audio_seconds(server.http_url) - before
                elapsed = time.monotonic() - started
                await browser.click("#stop")
                await browser.wait_for(
                    "document.querySelector('#status').dataset.state === 'closed'", TIMEOUT_S
                )
                status = await browser.evaluate("document.querySelector('#status').textContent")
                return received, elapsed, status, browser.log_errors

        received, elapsed, status, errors = asyncio.run(scenario())
    assert not errors, errors
    assert status == "Session closed"
    # Audio arrives at real-time pace: 16 kHz labelled as such, neither 48 kHz sent as 16 kHz
    # (three times too fast) nor the reverse. The window's edges and a loaded machine cost a
    # few messages, hence the margin.
    assert 0.75 <= received / elapsed <= 1.25, (received, elapsed)
