"""The small HTTP routes: health, readiness, statistics, metrics, browser tokens, the pages."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from server.backends.base import AnyTranscriber, HasCircuitBreaker, RetriesRequests
from server.core.errors import ApiError, InvalidMessage
from server.core.options import parse_options
from server.core.realtime.config import (
    openai_id,
    options_from_transcription_session,
    transcription_session_view,
)
from server.runtime.context import ServerContext
from server.runtime.metrics import CONTENT_TYPE
from server.web.openapi_docs import errors

MAX_TOKEN_TTL_S = 7200
# The pages ship in the client package; the server serves them as files, without importing it.
WEB_DIR = Path(__file__).resolve().parents[2] / "client" / "web"


def health_router(context: ServerContext, backend: AnyTranscriber, served_model: str) -> APIRouter:
    router = APIRouter(tags=["health"])
    scheduler = context.scheduler

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "Loading, failed, or shutting down"}})
    async def readyz() -> JSONResponse:
        """The model is loaded and warmed up (and the server is not shutting down)."""
        if context.shutting_down.is_set():
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if scheduler.ready.is_set():
            return JSONResponse({"status": "ready", "model": served_model})
        if scheduler.load_error is not None:
            return JSONResponse(
                {"status": "failed", "error": str(scheduler.load_error)}, status_code=503
            )
        return JSONResponse({"status": "loading", "model": served_model}, status_code=503)

    @router.get("/stats", responses=errors(401))
    async def stats() -> dict[str, object]:
        """Requests served, failed and failed over, and usage per backend since start."""
        body = scheduler.stats.as_dict()
        body["queued"] = scheduler.queued
        body["active_sessions"] = context.sessions.total
        body["load"] = context.load_report.as_dict()
        if isinstance(backend, HasCircuitBreaker):
            body["remote_circuit"] = backend.breaker.state.value
        if isinstance(backend, RetriesRequests):
            body["backend_retries"] = backend.retries
        return body

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}, **errors(401)},
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(context.metrics.exposition(), media_type=CONTENT_TYPE)

    return router


def token_router(context: ServerContext, model_names: Collection[str]) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.post("/v1/realtime/client_secrets", responses=errors(400, 401))
    async def client_secrets(request: Request) -> dict[str, Any]:
        """A short-lived token for a browser, which cannot set headers on a websocket:
        connect to ``/v1/stream?token=...``. Needs an API key itself (a token cannot mint
        another). In OpenAI's shape: ``{"expires_after": {...}, "session": {...}}`` in, the
        token as ``value``, its ``expires_at`` and the ``session`` it pins out."""
        body = await _json(request) if await request.body() else {}
        ttl_s = requested_ttl(body, context.auth.token_ttl_s)
        pinned, model = _requested_session(body, model_names)
        principal = getattr(request.state, "principal", None)  # set by AccessMiddleware
        key_id = principal.key_id if principal is not None else "anonymous"
        expires_at = int(time.time()) + ttl_s
        token = context.authenticator.signer.issue(key_id, expires_at, pinned)
        session = transcription_session_view(
            openai_id("sess"),
            parse_options(pinned),
            model or context.served_models[0],
            expires_at=expires_at,
        )
        return {"value": token, "expires_at": expires_at, "session": session}

    return router


def _requested_session(
    body: Any, model_names: Collection[str]
) -> tuple[dict[str, Any], str | None]:
    session = body.get("session") if isinstance(body, dict) else None
    try:
        pinned, model = options_from_transcription_session(session)
    except InvalidMessage as exc:
        raise ApiError(400, exc.message, param="session") from None
    if model is not None and model not in model_names:
        raise ApiError(
            400,
            f"model {model!r} is not served here; available: {', '.join(sorted(model_names))}",
            param="session.audio.input.transcription.model",
            code="model_not_found",
        )
    return pinned, model


def page_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def capture_page() -> FileResponse:
        """The browser microphone page."""
        return FileResponse(WEB_DIR / "index.html")

    @router.get("/rooms/{room_id}")
    async def room_page(room_id: str) -> FileResponse:
        """A meeting room's shared live transcript (the viewer link adds its watch_token)."""
        return FileResponse(WEB_DIR / "room.html")

    @router.get("/watch/{session_id}")
    async def watch_page(session_id: str) -> FileResponse:
        """Read-only live captions of a session (the share link adds its watch_token)."""
        return FileResponse(WEB_DIR / "watch.html")

    return router


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None


def requested_ttl(body: Any, default_s: int) -> int:
    """OpenAI's shape: ``{"expires_after": {"anchor": "created_at", "seconds": N}}``."""
    after = body.get("expires_after") if isinstance(body, dict) else None
    if after is None:
        return default_s
    seconds = after.get("seconds") if isinstance(after, dict) else None
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not 10 <= seconds <= MAX_TOKEN_TTL_S
    ):
        raise ApiError(
            400,
            f"expires_after.seconds must be an integer from 10 to {MAX_TOKEN_TTL_S}",
            param="expires_after.seconds",
        )
    return seconds
