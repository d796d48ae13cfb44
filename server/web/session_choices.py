"""Session options whose valid values depend on this server: the model, the backend that
answers partials, and translation (multilingual models only). Checked when a session opens and
at each ``session.update``."""

from __future__ import annotations

from typing import Any

from server.core.errors import InvalidMessage
from server.runtime.context import ServerContext


def check_session_choices(context: ServerContext, changes: dict[str, Any]) -> None:
    model = changes.get("model")
    if model is not None and model not in context.served_models:
        raise InvalidMessage(
            f"model {model!r} is not served here; available: {', '.join(context.served_models)}",
            code="model_not_found",
        )
    choice = changes.get("partial_backend")
    available = context.scheduler.partial_backends
    if choice not in (None, "auto") and choice not in available:
        raise InvalidMessage(
            f"partial_backend {choice!r} is not available here; this server has: "
            f"{', '.join(available)}",
            code="invalid_session",
        )
    if changes.get("task") == "translate" and not context.scheduler.transcriber.multilingual:
        raise InvalidMessage(
            "task translate needs a multilingual model; this server's model is English-only "
            f"({', '.join(context.served_models)})",
            code="invalid_session",
        )
