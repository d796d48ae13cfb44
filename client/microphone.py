"""The microphone as an async stream of PCM16 chunks (sounddevice, on PortAudio: Debian's
``libportaudio2``; ``pip install 'streamscribe[mic]'``). The capture callback runs in
PortAudio's thread and only hands bytes to the event loop, so it never blocks the audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

PREFERRED_RATES_HZ = (16_000, 48_000, 44_100, 24_000, 8_000)  # what the server accepts


class MicrophoneError(Exception):
    """No usable microphone, or PortAudio/sounddevice missing."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise MicrophoneError(
            "microphone capture needs sounddevice and PortAudio: "
            "pip install 'streamscribe[mic]' and apt-get install libportaudio2"
        ) from exc
    return sounddevice


def list_devices() -> list[str]:
    sounddevice = _sounddevice()
    return [
        f"{index}: {device['name']} ({device['max_input_channels']} in, "
        f"{device['default_samplerate']:.0f} Hz)"
        for index, device in enumerate(sounddevice.query_devices())
        if device["max_input_channels"] > 0
    ]


def pick_rate(device: int | str | None) -> int:
    """The first rate the server accepts that the device can capture at."""
    sounddevice = _sounddevice()
    for rate in PREFERRED_RATES_HZ:
        try:
            sounddevice.check_input_settings(
                device=device, channels=1, dtype="int16", samplerate=rate
            )
        except Exception:
            continue
        return rate
    raise MicrophoneError(f"input device {device!r} supports none of {PREFERRED_RATES_HZ} Hz")


async def microphone_chunks(
    device: int | str | None, sample_rate_hz: int, chunk_ms: int = 100
) -> AsyncIterator[bytes]:
    """Chunks until cancelled. Chunks captured while the consumer is busy queue up: none lost."""
    sounddevice = _sounddevice()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def on_audio(data: Any, frames: int, time: Any, status: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

    try:
        stream = sounddevice.RawInputStream(
            samplerate=sample_rate_hz,
            channels=1,
            dtype="int16",
            blocksize=sample_rate_hz * chunk_ms // 1000,
            device=device,
            callback=on_audio,
        )
    except Exception as exc:
        raise MicrophoneError(f"cannot open the microphone: {exc}") from exc
    with stream:
        while True:
            yield await queue.get()
