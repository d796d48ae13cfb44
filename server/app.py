"""The HTTP and websocket application: health, metrics, tokens and the streaming endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.backends import make_transcriber
from server.backends.base import AnyTranscriber
from server.context import ServerContext
from server.errors import ApiError
from server.http_access import AccessMiddleware
from server.metrics import CONTENT_TYPE
from server.openai_api import build_router
from server.openapi_docs import errors
from server.scheduler import InferenceScheduler
from server.settings import ServerSettings
from server.stream_endpoint import handle_stream, handle_watch

log = logging.getLogger("streamscribe")

MAX_TOKEN_TTL_S = 7200
WEB_DIR = Path(__file__).resolve().parent.parent / "client" / "web"


def create_app(settings: ServerSettings, transcriber: AnyTranscriber | None = None) -> FastAPI:
    """Build the app. ``transcriber`` overrides the backend named in ``settings`` (tests)."""
    backend = transcriber if transcriber is not None else make_transcriber(settings)
    scheduler = InferenceScheduler(
        backend,
        workers=settings.workers,
        max_queued_partials=settings.max_queued_partials,
        max_batch_size=settings.max_batch_size,
        batch_window_ms=settings.batch_window_ms,
        batch_finals=settings.batch_finals,
    )
    context = ServerContext.build(settings, scheduler)
    scheduler.observer = context.record_inference
    scheduler.batch_observer = context.metrics.record_batch

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loading = asyncio.create_task(scheduler.start())
        load_watcher = asyncio.create_task(context.watch_load(), name="load-watcher")
        try:
            yield
        finally:
            load_watcher.cancel()
            app.state.loading.cancel()
            await scheduler.close()

    app = FastAPI(
        title="StreamScribe",
        version="0.1.0",
        summary="Real-time streaming dictation",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.context = context
    app.include_router(build_router(settings, lambda: backend.multilingual))
    app.add_middleware(AccessMiddleware, context=context)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        context.metrics.record_error(exc.api_code or exc.error_type)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes and methods answer in OpenAI's shape too, not FastAPI's."""
        error = ApiError(exc.status_code, str(exc.detail), code=_http_code(exc.status_code))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(str(error.get("msg", "")) for error in exc.errors())
        error = ApiError(400, f"invalid request: {problems}")
        return JSONResponse(error.body(), status_code=400)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "Loading, failed to load, or shutting down"}},
    )
    async def readyz() -> JSONResponse:
        """The model is loaded and warmed up (and the server is not shutting down)."""
        if context.shutting_down.is_set():
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if scheduler.ready.is_set():
            return JSONResponse({"status": "ready", "model": settings.served_model})
        if scheduler.load_error is not None:
            return JSONResponse(
                {"status": "failed", "error": str(scheduler.load_error)}, status_code=503
            )
        return JSONResponse({"status": "loading", "model": settings.served_model}, status_code=503)

    @app.get("/stats", tags=["health"], responses=errors(401))
    async def stats() -> dict[str, object]:
        """Requests served, failed and failed over, and usage per backend since start."""
        body = scheduler.stats.as_dict()
        body["queued"] = scheduler.queued
        body["active_sessions"] = context.sessions.total
        body["load"] = context.load_report.as_dict()
        breaker = getattr(getattr(backend, "remote", None), "breaker", None)
        if breaker is not None:
            body["remote_circuit"] = breaker.state.value
        return body

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}, **errors(401)},
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(context.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post("/v1/realtime/client_secrets", tags=["auth"], responses=errors(400, 401))
    async def client_secrets(request: Request) -> dict[str, Any]:
        """A short-lived token for a browser, which cannot set headers on a websocket:
        connect to ``/v1/stream?token=...``. Needs an API key itself."""
        ttl_s = settings.token_ttl_s
        if await request.body():
            ttl_s = _requested_ttl(await _json(request), ttl_s)
        principal = getattr(request.state, "principal", None)
        key_id = principal.key_id if principal is not None else "anonymous"
        expires_at = int(time.time()) + ttl_s
        token = context.authenticator.signer.issue(key_id, expires_at)
        return {"value": token, "expires_at": expires_at}

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await handle_stream(websocket, context)

    @app.websocket("/v1/watch/{session_id}")
    async def watch_stream(websocket: WebSocket, session_id: str) -> None:
        await handle_watch(websocket, context, session_id)

    @app.get("/", include_in_schema=False)
    async def capture_page() -> FileResponse:
        """The browser microphone page."""
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/watch/{session_id}", include_in_schema=False)
    async def watch_page(session_id: str) -> FileResponse:
        """Read-only live captions of a session (the share link adds its watch_token)."""
        return FileResponse(WEB_DIR / "watch.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    return app


def _http_code(status: int) -> str | None:
    return {404: "not_found", 405: "method_not_allowed"}.get(status)


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None


def _requested_ttl(body: Any, default_s: int) -> int:
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
