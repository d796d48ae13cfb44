"""The ASGI application: wiring only. It builds the backend, the scheduler and the shared
context from the settings, and mounts each protocol adapter and route module:

    /v1/stream, /v1/watch/{id}       StreamScribe's own streaming protocol (stream_endpoint)
    /v1/realtime                     OpenAI's Realtime transcription protocol (realtime_endpoint)
    /v1/audio/*, /v1/models          OpenAI's audio REST API (openai_api)
    /healthz /readyz /stats /metrics health and operations (routes)
    /v1/realtime/client_secrets      browser tokens (routes)
    /v1/rooms/*                      meeting rooms (room_routes, rooms)
    /, /watch/{id}, /static          the browser pages (routes)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.backends.base import AnyTranscriber, DescribesItself
from server.backends.registry import make_transcriber
from server.core.errors import ApiError
from server.runtime.context import ServerContext
from server.runtime.memory_trim import MemoryTrimmer, glibc_malloc_trim
from server.runtime.scheduler import InferenceScheduler
from server.settings import ServerSettings
from server.web.body_limit import BodyLimitMiddleware
from server.web.http_access import AccessMiddleware
from server.web.live_session import LiveSessionRegistry
from server.web.openai_api import build_router
from server.web.realtime_endpoint import handle_realtime
from server.web.registry import LiveSessions
from server.web.room_routes import room_router, sweep_rooms
from server.web.rooms import RoomRegistry
from server.web.routes import WEB_DIR, health_router, page_router, token_router
from server.web.stream_endpoint import handle_stream, handle_watch


def create_app(
    settings: ServerSettings,
    transcriber: AnyTranscriber | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app. ``transcriber`` overrides the backend named in ``settings`` (tests);
    ``on_ready`` is told, once the model is ready, where the page is and what runs."""
    backend = transcriber if transcriber is not None else make_transcriber(settings)
    scheduler = InferenceScheduler(backend, settings.scheduling)
    context = ServerContext.build(settings, scheduler)
    scheduler.observer = context.record_inference
    scheduler.batch_observer = context.metrics.record_batch
    trimmer = MemoryTrimmer(scheduler, settings.scheduling.memory_trim_s, glibc_malloc_trim())
    registry: LiveSessionRegistry = LiveSessions()
    context.load_listeners.append(registry.receive_load)
    rooms = RoomRegistry(
        settings.rooms,
        settings.streaming,
        logging.LoggerAdapter(logging.getLogger("streamscribe.rooms")),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loading = asyncio.create_task(scheduler.start())
        watchers = [  # run for the app's life
            asyncio.create_task(context.watch_load(), name="load-watcher"),
            asyncio.create_task(sweep_rooms(rooms), name="room-sweeper"),
            asyncio.create_task(trimmer.run(), name="memory-trim"),
        ]
        if on_ready is not None:
            ready = announce(scheduler, settings, on_ready)
            app.state.announcing = asyncio.create_task(ready)
        try:
            yield
        finally:
            rooms.close_all()
            for watcher in watchers:
                watcher.cancel()
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
    app.state.live_sessions = registry
    app.state.rooms = rooms
    app.include_router(build_router(settings, lambda: backend.multilingual))
    app.include_router(health_router(context, backend, settings.served_model))
    app.include_router(token_router(context, settings.model_routes))
    app.include_router(room_router(context, rooms))
    app.include_router(page_router())
    add_middleware(app, settings, context)
    add_error_handlers(app, context)

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await handle_stream(websocket, context, registry, rooms)

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await handle_realtime(websocket, context, registry, settings.model_routes, rooms)

    @app.websocket("/v1/watch/{session_id}")
    async def watch_stream(websocket: WebSocket, session_id: str) -> None:
        await handle_watch(websocket, context, registry, session_id)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def add_middleware(app: FastAPI, settings: ServerSettings, context: ServerContext) -> None:
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_upload_bytes)
    app.add_middleware(AccessMiddleware, context=context)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )


async def announce(
    scheduler: InferenceScheduler, settings: ServerSettings, tell: Callable[[str], None]
) -> None:
    """Once the model is ready: where the page is, and what answers (model, device, type)."""
    await scheduler.ready.wait()
    backend = scheduler.transcriber
    what = backend.description if isinstance(backend, DescribesItself) else settings.model
    tell(f"StreamScribe is ready at http://{settings.host}:{settings.port}/ ({what})")


def add_error_handlers(app: FastAPI, context: ServerContext) -> None:
    """Every HTTP error answers in OpenAI's shape, not FastAPI's."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        context.metrics.record_error(exc.api_code or exc.error_type)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, str(exc.detail), code=_http_code(exc.status_code))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(str(error.get("msg", "")) for error in exc.errors())
        error = ApiError(400, f"invalid request: {problems}")
        return JSONResponse(error.body(), status_code=400)


def _http_code(status: int) -> str | None:
    return {404: "not_found", 405: "method_not_allowed"}.get(status)
