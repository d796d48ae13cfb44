"""What the OpenAPI document says about responses: every refusal an endpoint can give, in
OpenAI's error shape, so a client generated from the document (or schemathesis) knows them."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_MEANINGS = {
    400: "The request is invalid (missing or bad field, undecodable or too short audio)",
    401: "Missing, wrong or expired API key (only when keys are configured)",
    404: "Unknown model",
    413: "The upload is over max_upload_bytes",
    500: "The model failed on this request",
    503: "The model is still loading, or the request was shed under load",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": _MEANINGS[status],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }


TRANSCRIPTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript in the requested response_format",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **errors(400, 401, 404, 413, 500, 503),
}
