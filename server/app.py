"""The HTTP and websocket application: health checks and the streaming endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from server.backends import make_transcriber
from server.backends.base import AnyTranscriber
from server.errors import ApiError
from server.openai_api import build_router
from server.scheduler import InferenceScheduler
from server.settings import ServerSettings
from server.stream_endpoint import StreamConnection

log = logging.getLogger("streamscribe")


def create_app(settings: ServerSettings, transcriber: AnyTranscriber | None = None) -> FastAPI:
    """Build the app. ``transcriber`` overrides the backend named in ``settings`` (tests)."""
    backend = transcriber if transcriber is not None else make_transcriber(settings)
    served_models = (settings.served_model,)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = InferenceScheduler(
            backend, workers=settings.workers, max_queued_partials=settings.max_queued_partials
        )
        app.state.scheduler = scheduler
        app.state.loading = asyncio.create_task(scheduler.start())
        try:
            yield
        finally:
            app.state.loading.cancel()
            await scheduler.close()

    app = FastAPI(
        title="StreamScribe",
        version="0.1.0",
        summary="Real-time streaming dictation",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(build_router(settings, lambda: backend.multilingual))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """The model is loaded and warmed up."""
        scheduler: InferenceScheduler = app.state.scheduler
        if scheduler.ready.is_set():
            return JSONResponse({"status": "ready", "model": settings.served_model})
        if scheduler.load_error is not None:
            return JSONResponse(
                {"status": "failed", "error": str(scheduler.load_error)}, status_code=503
            )
        return JSONResponse({"status": "loading", "model": settings.served_model}, status_code=503)

    @app.get("/stats", tags=["health"])
    async def stats() -> dict[str, object]:
        """Requests served, failed and failed over, and usage per backend since start."""
        scheduler: InferenceScheduler = app.state.scheduler
        body = scheduler.stats.as_dict()
        body["queued"] = scheduler.queued
        breaker = getattr(getattr(backend, "remote", None), "breaker", None)
        if breaker is not None:
            body["remote_circuit"] = breaker.state.value
        return body

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        connection = StreamConnection(
            websocket, websocket.app.state.scheduler, settings, served_models
        )
        await connection.run()

    return app
