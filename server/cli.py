"""Run the StreamScribe server (websocket streaming on /v1/stream, health on /healthz, /readyz)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from server.errors import StreamScribeError

_FLAGS = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "port to listen on; 0 picks a free one (default 8000)",
    "backend": "speech backend: local (faster-whisper), remote (OpenAI-compatible API) or fake",
    "model": "tiny.en, base or small (bundled), a CTranslate2 directory, or a hub id",
    "device": "auto, cpu or cuda",
    "compute_type": "auto, int8, int8_float16, float16, float32, ...",
    "cpu_threads": "CPU threads per model call (0: all cores)",
    "workers": "model calls run at once",
    "beam_size": "beam size for finals (partials use 1)",
    "default_vad": "VAD for sessions that do not choose: webrtc or silero",
    "cache_dir": "where joined model files are kept",
    "max_batch_size": "requests of different sessions run as one batch, at most (1: no batching; "
    "0, the default: 4 on a GPU, 1 on CPU, where batching cost final latency under load)",
    "batch_window_ms": "how long a partial waits for others to share its batch (default 10)",
    "batch_finals": "true or false: finals of different sessions may share a batch (default "
    "false: on CPU it costs final latency, see benchmarks/RESULTS.md)",
    "admission": "true or false: refuse new sessions when finals would miss their budget",
    "final_latency_budget_ms": "final latency p95 over which partials pause and new sessions "
    "are refused (default 1500)",
    "max_final_load": "share of the model's time finals may take before new sessions are "
    "refused (default 0.8)",
    "max_upload_bytes": "largest REST upload in bytes (default 25 MB)",
    "remote_url": "remote backend's base URL, e.g. https://api.openai.com/v1 (key from "
    "STREAMSCRIBE_REMOTE_API_KEY or OPENAI_API_KEY)",
    "remote_model": "remote model: gpt-4o-transcribe, gpt-4o-mini-transcribe, whisper-1, ...",
    "remote_timeout_s": "seconds one remote attempt may take",
    "remote_deadline_s": "seconds a final's remote attempts may take in all",
    "remote_max_concurrent": "remote requests at once",
    "remote_max_retries": "retries of a final after the first attempt",
    "remote_fallback": "none, or local: answer from --model when the remote fails",
    "remote_stream_partials": "auto, on or off: partials as streamed deltas from the remote",
    "api_key_file": "file of hashed API keys (see `streamscribe hash-key`); keys can also "
    "come from STREAMSCRIBE_API_KEYS=k1,k2",
    "allowed_origins": "browser origins allowed for the websocket and CORS, comma-separated",
    "max_sessions": "open sessions at most (0: unlimited)",
    "max_sessions_per_key": "open sessions per API key at most (0: unlimited)",
    "max_session_s": "longest session in seconds (0: unlimited)",
    "max_message_bytes": "largest websocket message (default 1 MiB)",
    "max_audio_speed": "fastest audio a client may send, in times real time (0: unlimited)",
    "idle_timeout_s": "close sessions silent this long (default 120; 0: never)",
    "shutdown_grace_s": "seconds open sessions get to finish on SIGTERM (default 10)",
    "resume_grace_s": "seconds a dropped session waits to be resumed (default 30; 0: never)",
    "log_format": "text or json (one JSON object per line)",
    "log_transcripts": "also log the text of finals (debugging only)",
    "log_level": "debug, info, warning or error",
    "config_file": "TOML file with any of these settings",
}


_SWITCHES = frozenset({"log_transcripts"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, help_text in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if name in _SWITCHES:
            parser.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
        else:
            parser.add_argument(flag, dest=name, help=help_text)
    parser.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    from server.settings import ServerSettings

    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None}
    return ServerSettings(**given)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"streamscribe serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from server.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        return serve(settings)
    except StreamScribeError as exc:
        print(f"streamscribe serve: {exc}", file=sys.stderr)
        return 2


def serve(settings: Any) -> int:
    from server.app import create_app
    from server.backends.models import resolve_model
    from server.logs import uvicorn_log_config
    from server.serving import build_server

    if settings.has_local_model:
        # Fail fast with the extra to install, before the server starts listening.
        resolve_model(settings.model, settings.cache_dir)
    if settings.backend == "remote":
        check_remote(settings)
    app = create_app(settings)
    log_config = uvicorn_log_config(settings.log_format)
    server = build_server(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        **({"log_config": log_config} if log_config else {}),
    )
    server.run()
    return 0


def check_remote(settings: Any) -> None:
    """A refused key or an unknown remote model stops the server before it listens."""
    import asyncio

    from server.backends import make_remote_transcriber

    async def check() -> None:
        backend = make_remote_transcriber(settings, local=None)
        remote = backend.remote  # type: ignore[union-attr]
        await remote.start()
        try:
            await remote.check()
        finally:
            await remote.close()

    asyncio.run(check())
