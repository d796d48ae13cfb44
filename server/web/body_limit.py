"""Request bodies are paid for as they arrive: a body that passes the limit is refused with
413 the moment it does, whether or not it declared its length (a chunked upload has none),
and the rest is never read or spooled."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core.errors import ApiError

# Room for the multipart envelope and the form fields around the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"Maximum content size limit ({limit} bytes) exceeded (max_upload_bytes).",
        param="file",
        code="file_too_large",
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limit = max_body_bytes + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            refusal = body_too_large(self.max_body_bytes)
            await JSONResponse(refusal.body(), status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the endpoint's read of the body: the app's ApiError
                    # handler answers 413 in OpenAI's shape, and nothing more is read.
                    raise body_too_large(self.max_body_bytes)
            return message

        await self.app(scope, counting_receive, send)
