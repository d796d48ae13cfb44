"""Run the StreamScribe server (websocket streaming on /v1/stream, health on /healthz, /readyz).

Every setting of ``ServerSettings`` is a flag (``max_sessions`` -> ``--max-sessions``), except
the secrets (API keys, the token secret, the remote's key), which come from the environment or
the TOML file only: a flag would show in the process list.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, get_origin

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from server.core.errors import StreamScribeError
from server.settings import GROUPS, ServerSettings

# Settings of the server as a whole, outside any group.
TOP_LEVEL = ("backend", "fake_script", "model_aliases", "config_file")


def is_secret(field: FieldInfo) -> bool:
    annotation = str(field.annotation)
    return "SecretStr" in annotation or field.annotation is SecretStr


def flag_fields() -> dict[str, FieldInfo]:
    """The settings that are flags, by field name: the server's own first, then each group in
    the order ``GROUPS`` lists them (address and port before the rest)."""
    names = [*TOP_LEVEL, *(name for group in GROUPS for name in group.model_fields)]
    fields = ServerSettings.model_fields
    return {name: fields[name] for name in names if not is_secret(fields[name])}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, field in flag_fields().items():
        help_text = field.description or ""
        if _takes_json(field):
            help_text += " (JSON)" if "JSON" not in help_text else ""
        parser.add_argument(flag_name(name), dest=name, help=help_text)
    parser.set_defaults(run=run)


def _takes_json(field: FieldInfo) -> bool:
    """Lists and tables other than the comma-separated ones come as JSON on the command line."""
    comma_separated = any(meta is NoDecode or isinstance(meta, NoDecode) for meta in field.metadata)
    return get_origin(field.annotation) in (list, dict) and not comma_separated


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    given: dict[str, Any] = {}
    for name, field in flag_fields().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if _takes_json(field):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{flag_name(name)} takes JSON: {exc}") from None
        given[name] = value
    return ServerSettings(**given)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except (ValidationError, ValueError) as exc:
        print(f"streamscribe serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from server.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        return serve(settings)
    except StreamScribeError as exc:
        print(f"streamscribe serve: {exc}", file=sys.stderr)
        return 2


def serve(settings: ServerSettings) -> int:
    from server.backends.models import resolve_model
    from server.logs import uvicorn_log_config
    from server.web.app import create_app
    from server.web.serving import build_server

    if settings.has_local_model:
        # Fail fast with the extra to install, before the server starts listening.
        resolve_model(settings.model, settings.cache_dir)
    if settings.backend == "remote":
        check_remote(settings)
    app = create_app(settings, on_ready=lambda line: print(line, flush=True))
    server = build_server(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(),
    )
    server.run()
    return 0


def check_remote(settings: ServerSettings) -> None:
    """A refused key or an unknown remote model stops the server before it listens."""
    import asyncio

    from server.backends.remote import RemoteTranscriber

    async def check() -> None:
        remote = RemoteTranscriber.from_settings(settings.remote)
        await remote.start()
        try:
            await remote.check()
        finally:
            await remote.close()

    asyncio.run(check())
