"""Backends by name, as ``--backend`` chooses them: ``local`` (faster-whisper), ``remote`` (an
OpenAI-compatible API over httpx, optionally with the local model as fallback), ``ray`` (a Ray
Serve deployment of the model, ``streamscribe ray deploy``), ``fake`` (scripted answers, no
model).

Each name maps to ``"module:function"``, imported only when that backend is built, so a server
on the remote backend never imports faster-whisper. A builder takes the server's settings and
hands each backend its own group of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from server.backends.base import AnyTranscriber
from server.core.errors import UsageError
from server.settings import BACKEND_NAMES, ServerSettings

BACKENDS: dict[str, str] = {
    "local": "server.backends.local:build",
    "remote": "server.backends.failover:build",
    "ray": "server.backends.ray_gateway:build",
    "fake": "server.backends.fake:build",
}
assert set(BACKENDS) == set(BACKEND_NAMES)

Builder = Callable[[ServerSettings], AnyTranscriber]


def builder(name: str) -> Builder:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    module_name, function_name = target.split(":")
    return cast(Builder, getattr(importlib.import_module(module_name), function_name))


def make_transcriber(settings: ServerSettings) -> AnyTranscriber:
    return builder(settings.backend)(settings)
