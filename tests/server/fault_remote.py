"""A small OpenAI-shaped transcription server that misbehaves on a schedule, for the remote
backend's tests. It is a real ASGI app served by uvicorn: the backend talks HTTP to it.

Each POST takes the next fault from ``schedule`` (then ``default``):

    ok            200 with the answer (verbose_json, json, or SSE when ``stream=true``)
    429 / 429:S   429 Too Many Requests, with ``Retry-After: S`` when given
    500, 503      server errors
    400, 401, 404 the caller's errors (401's message quotes a masked key, as OpenAI's does)
    slow:S        wait S seconds, then answer ok
    garbage       200 with a body that is not JSON
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import wave
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class ReceivedRequest:
    fields: dict[str, list[str]]
    authorization: str | None
    audio_s: float
    fault: str
    priority: str | None = None


@dataclass
class FaultyRemote:
    schedule: list[str] = field(default_factory=list)
    default: str = "ok"
    text: str = "remote words"
    models: tuple[str, ...] = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
    models_status: int = 200
    requests: list[ReceivedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self._transcribe, methods=["POST"]),
                Route("/v1/audio/translations", self._transcribe, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        # running_server() waits for a scheduler; this app has none, so it is always ready.
        self.app.state.scheduler = _AlwaysReady()

    def set_schedule(self, schedule: list[str], default: str = "ok") -> None:
        with self._lock:
            self.schedule = list(schedule)
            self.default = default

    def faults(self) -> list[str]:
        return [request.fault for request in self.requests]

    async def _models(self, request: Request) -> Response:
        if self.models_status != 200:
            return _error(self.models_status, "Incorrect API key provided: sk-abc***wxyz")
        return JSONResponse(
            {"object": "list", "data": [{"id": name, "object": "model"} for name in self.models]}
        )

    async def _transcribe(self, request: Request) -> Response:
        form = await request.form()
        fields: dict[str, list[str]] = {}
        audio_s = 0.0
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                with wave.open(io.BytesIO(data)) as reader:
                    audio_s = reader.getnframes() / reader.getframerate()
            else:
                fields.setdefault(key, []).append(str(value))
        with self._lock:
            fault = self.schedule.pop(0) if self.schedule else self.default
            self.requests.append(
                ReceivedRequest(
                    fields,
                    request.headers.get("authorization"),
                    audio_s,
                    fault,
                    request.headers.get("x-streamscribe-priority"),
                )
            )
        return await self._answer(fault, fields, audio_s)

    async def _answer(self, fault: str, fields: dict[str, list[str]], audio_s: float) -> Response:
        kind, _, argument = fault.partition(":")
        if kind == "slow":
            await asyncio.sleep(float(argument))
            kind = "ok"
        if kind == "429":
            headers = {"Retry-After": argument} if argument else {}
            return _error(429, "Rate limit reached", headers)
        if kind in ("500", "503"):
            return _error(int(kind), "The server had an error while processing your request.")
        if kind == "401":
            return _error(401, "Incorrect API key provided: sk-abc***wxyz")
        if kind in ("400", "404"):
            return _error(int(kind), f"refused on purpose ({kind})")
        if kind == "garbage":
            return Response(b"<html>502 Bad Gateway</html>", media_type="application/json")
        return self._ok(fields, audio_s)

    def _ok(self, fields: dict[str, list[str]], audio_s: float) -> Response:
        text = self.text
        if fields.get("stream") == ["true"]:
            return StreamingResponse(_deltas(text), media_type="text/event-stream")
        if fields.get("response_format") == ["verbose_json"]:
            words = text.split()
            step = audio_s / max(1, len(words))
            return JSONResponse(
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": audio_s,
                    "text": text,
                    "segments": [
                        {
                            "id": 0,
                            "seek": 0,
                            "start": 0.0,
                            "end": audio_s,
                            "text": " " + text,
                            "tokens": [50364, 2425],
                            "temperature": 0.0,
                            "avg_logprob": -0.2,
                            "compression_ratio": 1.1,
                            "no_speech_prob": 0.01,
                        }
                    ],
                    "words": [
                        {"word": word, "start": index * step, "end": (index + 1) * step}
                        for index, word in enumerate(words)
                    ],
                    "usage": {"type": "duration", "seconds": round(audio_s + 0.5)},
                }
            )
        return JSONResponse(
            {
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": 50,
                    "output_tokens": len(text.split()),
                    "total_tokens": 50 + len(text.split()),
                },
            }
        )


async def _deltas(text: str) -> Any:
    for index, word in enumerate(text.split()):
        delta = word if index == 0 else " " + word
        yield f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': delta})}\n\n"
        await asyncio.sleep(0.02)
    done = {
        "type": "transcript.text.done",
        "text": text,
        "usage": {"type": "tokens", "input_tokens": 40, "output_tokens": 3, "total_tokens": 43},
    }
    yield f"data: {json.dumps(done)}\n\n"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return JSONResponse(body, status_code=status, headers=headers)


class _AlwaysReady:
    class _Set:
        @staticmethod
        def is_set() -> bool:
            return True

    ready = _Set()
    load_error = None
