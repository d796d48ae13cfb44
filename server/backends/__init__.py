"""Speech backends, chosen by name: ``local`` (faster-whisper), ``remote`` (an OpenAI-compatible
API over httpx, optionally with the local model as fallback) or ``fake`` (scripted, no model).

Heavy dependencies are imported only when their backend is built.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from server.errors import UsageError

if TYPE_CHECKING:
    from server.backends.base import AnyTranscriber, Transcriber
    from server.settings import ServerSettings

BACKEND_NAMES = ("local", "remote", "fake")


def default_cpu_threads() -> int:
    """Every model call may use every core: alone it runs fastest, and when two run at once
    the operating system shares the cores between them."""
    return os.cpu_count() or 1


def make_transcriber(settings: ServerSettings) -> AnyTranscriber:
    if settings.backend == "local":
        return make_local_transcriber(settings)
    if settings.backend == "remote":
        return make_remote_transcriber(settings)
    if settings.backend == "fake":
        from server.backends.fake import ScriptedTranscriber

        return ScriptedTranscriber(settings.fake_script)
    raise UsageError(f"unknown backend {settings.backend!r}; choose one of {BACKEND_NAMES}")


def make_remote_transcriber(
    settings: ServerSettings, local: Transcriber | None = None
) -> AnyTranscriber:
    """``local`` overrides the fallback model that ``remote_fallback`` would load (tests)."""
    from server.backends.failover import FailoverTranscriber
    from server.backends.remote import RemoteTranscriber
    from server.backends.resilience import CircuitBreaker

    assert settings.remote_url is not None
    key = settings.remote_api_key
    remote = RemoteTranscriber(
        settings.remote_url,
        model=settings.remote_model,
        api_key=key.get_secret_value() if key is not None else None,
        timeout_s=settings.remote_timeout_s,
        deadline_s=settings.remote_deadline_s,
        max_concurrent=settings.remote_max_concurrent,
        max_retries=settings.remote_max_retries,
        response_format=settings.remote_response_format,
        stream_partials=settings.remote_stream_partials,
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
        ),
    )
    if local is None and settings.remote_fallback == "local":
        local = make_local_transcriber(settings)
    return FailoverTranscriber(remote, local, local_workers=settings.workers)


def make_local_transcriber(settings: ServerSettings) -> Transcriber:
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
