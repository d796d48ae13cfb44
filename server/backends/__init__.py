"""Speech backends, chosen by name: ``local`` (faster-whisper) or ``fake`` (scripted, no model).

Heavy dependencies are imported only when their backend is built.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from server.errors import UsageError

if TYPE_CHECKING:
    from server.backends.base import Transcriber
    from server.settings import ServerSettings

BACKEND_NAMES = ("local", "fake")


def default_cpu_threads() -> int:
    """Every model call may use every core: alone it runs fastest, and when two run at once
    the operating system shares the cores between them."""
    return os.cpu_count() or 1


def make_transcriber(settings: ServerSettings) -> Transcriber:
    if settings.backend == "local":
        from server.backends.local import FasterWhisperTranscriber

        return FasterWhisperTranscriber(
            settings.model,
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads or default_cpu_threads(),
            num_workers=settings.workers,
            final_beam_size=settings.beam_size,
            partial_beam_size=settings.partial_beam_size,
            cache_dir=settings.cache_dir,
        )
    if settings.backend == "fake":
        from server.backends.fake import ScriptedTranscriber

        return ScriptedTranscriber(settings.fake_script)
    raise UsageError(f"unknown backend {settings.backend!r}; choose one of {BACKEND_NAMES}")
