"""HTTP requests at the door: the API key check (401 in OpenAI's error shape) and the count of
responses by route and status for ``/metrics``. A pure ASGI middleware, so it sees every
response, streamed ones included. Websockets pass through: the stream endpoint checks them
itself, because it answers with an ``error`` event and a close code."""

from __future__ import annotations

import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.errors import ApiError, Unauthorized
from server.policy.auth import bearer
from server.runtime.context import ServerContext

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})
# The pages and their scripts hold no data; the websockets they open are checked.
OPEN_PREFIXES = ("/static/", "/watch/", "/rooms/")
ROUTES = (
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/realtime/client_secrets",
    "/v1/rooms",
    "/v1/models",
    "/metrics",
    "/stats",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/",
)


def route_label(path: str) -> str:
    """A bounded set of labels: one per route, never the raw path (ids, garbage)."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path.startswith("/watch/"):
        return "/watch/{id}"
    if path.startswith("/rooms/"):
        return "/rooms/{id}"
    if path.startswith("/static/"):
        return "/static"
    if path.startswith("/v1/rooms/"):
        return "/v1/rooms/{id}/transcript" if _is_room_transcript(path) else "/v1/rooms/{id}"
    return path if path in ROUTES else "other"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, context: ServerContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app dies before answering

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._authenticate(scope)
            if refusal is not None:
                await refusal(scope, receive, counting_send)
                return
            await self.app(scope, receive, counting_send)
        finally:
            self.context.metrics.record_http(route_label(scope["path"]), status)

    def _authenticate(self, scope: Scope) -> JSONResponse | None:
        authenticator = self.context.authenticator
        path = scope["path"]
        if not authenticator.enabled or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        if _is_room_transcript(path) and scope["method"] == "GET":
            return None  # its watch_token is the credential, as for the room's viewers
        if scope["method"] == "OPTIONS":
            return None  # CORS preflight carries no credentials
        headers = dict(scope["headers"])
        credential = bearer(_header(headers, b"authorization"))
        try:
            principal = authenticator.authenticate(credential, time.time())
        except Unauthorized as exc:
            self.context.metrics.record_error(exc.code)
            code = exc.code if exc.code == "token_not_allowed" else "invalid_api_key"
            error = ApiError(401, _openai_message(exc), code=code)
            return JSONResponse(
                error.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        scope.setdefault("state", {})["principal"] = principal
        return None


def _is_room_transcript(path: str) -> bool:
    return path.startswith("/v1/rooms/") and path.endswith("/transcript")


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def _openai_message(exc: Unauthorized) -> str:
    if exc.code == "missing_api_key":
        return (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    return f"Incorrect API key provided ({exc.message})."
