"""OpenAI's audio API, served from the local model: ``POST /v1/audio/transcriptions``,
``POST /v1/audio/translations``, ``GET /v1/models`` and ``GET /v1/models/{id}``.

Requests are parsed by hand rather than by FastAPI's validation so that every refusal has
OpenAI's error shape and status (a 422 would break clients written for OpenAI). Uploads are
decoded in a worker thread; transcription goes through the shared scheduler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from server.core import formats
from server.core.audio_files import AudioDecodeError, AudioTooLong, decode_pcm16
from server.core.errors import ApiError, BackendError
from server.core.transcription import (
    PRIORITY_HEADER,
    DecodeOptions,
    RequestKind,
    Segment,
    TranscribeRequest,
    Transcription,
)
from server.core.units import STREAM_RATE_HZ
from server.runtime.rest_chunking import (
    AUTO,
    AUTO_CHUNK_S,
    ChunkingStrategy,
    merged,
    parse_chunking,
    plan_chunks,
    transcribe_chunks,
)
from server.runtime.scheduler import InferenceScheduler
from server.settings import ServerSettings
from server.web.body_limit import body_too_large
from server.web.openapi_docs import TRANSCRIPTION_RESPONSES, errors

MIN_AUDIO_S = 0.1
_request_ids = itertools.count(1_000_000_000)

_FORM_SCHEMA = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "language": {"type": "string"},
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(formats.RESPONSE_FORMATS)},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "stream": {"type": "boolean"},
        "chunking_strategy": {"type": "string", "description": "auto, or a server_vad object"},
        "include[]": {"type": "array", "items": {"type": "string", "enum": ["logprobs"]}},
        "timestamp_granularities[]": {
            "type": "array",
            "items": {"type": "string", "enum": ["segment", "word"]},
        },
    },
}
_OPENAPI_BODY = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}}}
}


def served_model_ids(settings: ServerSettings) -> list[str]:
    return list(settings.model_routes)


def build_router(settings: ServerSettings, multilingual: Any) -> APIRouter:
    """``multilingual()`` says whether the loaded model can detect languages and translate."""
    router = APIRouter(tags=["openai"])

    @router.get("/v1/models", responses=errors(401))
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(name) for name in served_model_ids(settings)]}

    @router.get("/v1/models/{model_id:path}", responses=errors(401, 404))
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in served_model_ids(settings):
            raise _unknown_model(model_id)
        return _model(model_id)

    @router.post(
        "/v1/audio/transcriptions",
        openapi_extra=_OPENAPI_BODY,
        responses=TRANSCRIPTION_RESPONSES,
        response_class=Response,
    )
    async def transcriptions(request: Request) -> Response:
        return await _handle(request, settings, "transcribe", multilingual)

    @router.post(
        "/v1/audio/translations",
        openapi_extra=_OPENAPI_BODY,
        responses=TRANSCRIPTION_RESPONSES,
        response_class=Response,
    )
    async def translations(request: Request) -> Response:
        return await _handle(request, settings, "translate", multilingual)

    return router


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "streamscribe"}


def _unknown_model(model_id: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model_id}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


@dataclasses.dataclass
class _Job:
    """One REST request, parsed: what to decode and how to answer."""

    task: str
    options: DecodeOptions
    response_format: str
    granularities: set[str]
    with_logprobs: bool
    stream: bool
    chunking: ChunkingStrategy | None
    samples: np.ndarray


async def _handle(
    request: Request, settings: ServerSettings, task: str, multilingual: Any
) -> Response:
    form = await request.form(max_files=1, max_fields=50)
    try:
        job = await _parse(form, settings, task, multilingual)
    finally:
        await form.close()
    duration_s = len(job.samples) / STREAM_RATE_HZ
    if duration_s < MIN_AUDIO_S:
        raise ApiError(
            400,
            f"Audio file is too short. Minimum audio length is {MIN_AUDIO_S} seconds.",
            param="file",
            code="audio_too_short",
        )
    partial = request.headers.get(PRIORITY_HEADER, "").lower() == "partial" and _relays(request)
    if job.chunking is None and duration_s > AUTO_CHUNK_S and not partial:
        job.chunking = AUTO
    return await _answer(request.app.state.scheduler, job, duration_s, partial=partial)


def _relays(request: Request) -> bool:
    """Whether the caller may queue its request as a partial: a key marked ``relay`` (another
    StreamScribe's remote backend), or anyone on an open server. Others would skip the chunking
    of long files and the finals' turns."""
    principal = getattr(request.state, "principal", None)  # set when keys are configured
    return principal is None or bool(principal.relay)


async def _parse(form: Any, settings: ServerSettings, task: str, multilingual: Any) -> _Job:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "you must provide a file", param="file")
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise body_too_large(settings.max_upload_bytes)
    model = _text(form, "model")
    if not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if model not in served_model_ids(settings):
        raise _unknown_model(model)
    response_format = _text(form, "response_format") or "json"
    if response_format not in formats.RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"Invalid response_format {response_format!r}; expected one of "
            + ", ".join(formats.RESPONSE_FORMATS),
            param="response_format",
        )
    options, granularities = _decode_options(form, task, response_format)
    with_logprobs = _wants_logprobs(form, response_format)
    if with_logprobs:
        options = dataclasses.replace(options, word_timestamps=True)
    options = dataclasses.replace(options, backend=settings.model_routes[model])
    stream = _flag(form, "stream")
    if stream:  # timestamped decoding yields sentence-sized segments: finer deltas
        options = dataclasses.replace(options, timestamps=True)
    if stream and response_format not in ("json", "text"):
        raise ApiError(
            400, "stream=true supports response_format json or text", param="response_format"
        )
    if task == "translate" and not multilingual():
        raise ApiError(
            400,
            f"model {settings.model!r} is English-only and cannot translate; "
            "serve a multilingual model (base, small) to use /v1/audio/translations",
            param="model",
        )
    chunking = parse_chunking(form)
    samples = await asyncio.to_thread(_decode_upload, upload, settings.max_audio_duration_s)
    return _Job(
        task, options, response_format, granularities, with_logprobs, stream, chunking, samples
    )


async def _answer(
    scheduler: InferenceScheduler, job: _Job, duration_s: float, *, partial: bool
) -> Response:
    def render(transcription: Transcription) -> Response:
        return _render(
            transcription,
            job.response_format,
            job.task,
            duration_s,
            job.granularities,
            job.with_logprobs,
        )

    if not scheduler.ready.is_set():
        raise ApiError(503, "the model is still loading; retry shortly", error_type="server_error")
    if job.chunking is not None:
        chunks = await asyncio.to_thread(plan_chunks, job.samples, job.chunking)
        answers = transcribe_chunks(
            scheduler, job.samples, chunks, job.options, window=max(1, scheduler.workers)
        )
        if job.stream:
            return _event_stream(_stream_chunks(answers, duration_s, job.with_logprobs))
        try:
            return render(merged([answer async for answer in answers], duration_s))
        except BackendError as exc:
            raise ApiError(500, f"transcription failed: {exc}", error_type="server_error") from exc
    request = _rest_request(scheduler, job.samples, job.options, partial=partial)
    if job.stream:
        return _event_stream(_stream_events(scheduler, request, duration_s, job.with_logprobs))
    return render(await _transcribe(scheduler, request))


def _event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _flag(form: Any, name: str) -> bool:
    value = _text(form, name).lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise ApiError(400, f"{name} must be true or false", param=name)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _decode_options(form: Any, task: str, response_format: str) -> tuple[DecodeOptions, set[str]]:
    language = _text(form, "language").lower() or None
    if task == "translate":
        language = None  # translations take no language: the source is detected
    elif language is not None and not (language.isalpha() and 2 <= len(language) <= 3):
        raise ApiError(400, f"Invalid language {language!r}: use ISO-639-1", param="language")
    temperature_text = _text(form, "temperature") or "0"
    try:
        temperature = float(temperature_text)
    except ValueError:
        raise ApiError(400, "temperature must be a number", param="temperature") from None
    if not 0.0 <= temperature <= 1.0:
        raise ApiError(400, "temperature must be between 0 and 1", param="temperature")
    granularities = {
        value
        for key in ("timestamp_granularities[]", "timestamp_granularities")
        for value in form.getlist(key)
        if isinstance(value, str)
    }
    unknown = granularities - {"segment", "word"}
    if unknown:
        raise ApiError(
            400,
            f"Invalid timestamp_granularities {sorted(unknown)}; expected segment or word",
            param="timestamp_granularities",
        )
    if granularities and response_format != "verbose_json":
        raise ApiError(
            400,
            "timestamp_granularities requires response_format=verbose_json",
            param="timestamp_granularities",
        )
    options = DecodeOptions(
        language=language,
        prompt=_text(form, "prompt"),
        task=task,
        temperature=temperature,
        timestamps=response_format in ("srt", "vtt", "verbose_json"),
        word_timestamps="word" in granularities,
    )
    return options, granularities


def _wants_logprobs(form: Any, response_format: str) -> bool:
    include = {
        value
        for key in ("include[]", "include")
        for value in form.getlist(key)
        if isinstance(value, str)
    }
    if include - {"logprobs"}:
        raise ApiError(
            400,
            f"Invalid include {sorted(include - {'logprobs'})}; expected logprobs",
            param="include",
        )
    if include and response_format != "json":
        raise ApiError(400, "logprobs is only supported with response_format json", param="include")
    return bool(include)


def _decode_upload(upload: UploadFile, max_duration_s: float) -> np.ndarray:
    upload.file.seek(0)
    try:
        pcm = decode_pcm16(
            upload.file, STREAM_RATE_HZ, max_samples=int(max_duration_s * STREAM_RATE_HZ)
        )
    except AudioTooLong as exc:
        raise ApiError(
            400,
            f"Audio file is longer than {exc.max_s:g} seconds, the most this server accepts "
            "(max_audio_duration_s).",
            param="file",
            code="audio_too_long",
        ) from None
    except AudioDecodeError:
        raise ApiError(
            400,
            "Audio file might be corrupted or unsupported",
            param="file",
            code="invalid_value",
        ) from None
    return pcm.astype(np.float32) / 32768.0


def _rest_request(
    scheduler: InferenceScheduler, samples: np.ndarray, options: DecodeOptions, *, partial: bool
) -> TranscribeRequest:
    """``partial``: another StreamScribe's partial (``PRIORITY_HEADER``): decoded greedily and
    served after finals, under its own key so no other request replaces it."""
    request_id = next(_request_ids)
    return TranscribeRequest(
        request_id=request_id,
        session_id="rest_" + uuid.uuid4().hex[:12],
        utterance_id=request_id,
        kind=RequestKind.PARTIAL if partial else RequestKind.FINAL,
        audio=samples,
        options=options,
        start_samples=0,
        end_samples=len(samples),
    )


async def _transcribe(scheduler: InferenceScheduler, job: TranscribeRequest) -> Transcription:
    future = scheduler.submit(job)
    try:
        await asyncio.wait({future})
    except asyncio.CancelledError:
        scheduler.cancel(job.session_id, job.request_id)  # the client went away
        raise
    if future.cancelled():
        raise ApiError(
            503, "the server is busy; the request was shed, retry later", error_type="server_error"
        )
    try:
        return future.result()
    except BackendError as exc:
        raise ApiError(500, f"transcription failed: {exc}", error_type="server_error") from exc


async def _stream_events(
    scheduler: InferenceScheduler, job: TranscribeRequest, duration_s: float, with_logprobs: bool
) -> AsyncIterator[str]:
    """OpenAI's transcription stream: a ``transcript.text.delta`` per decoded segment, sent
    while later windows are still decoding, then ``transcript.text.done``."""
    loop = asyncio.get_running_loop()
    decoded: asyncio.Queue[Segment] = asyncio.Queue()

    def from_any_thread(segment: Segment) -> None:
        loop.call_soon_threadsafe(decoded.put_nowait, segment)

    future = scheduler.submit(job, on_segment=from_any_thread)
    sent_any = False
    while not (future.done() and decoded.empty()):
        if decoded.empty():
            getter = asyncio.ensure_future(decoded.get())
            waiting: set[asyncio.Future[Any]] = {getter, future}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            segment = getter.result()
        else:
            segment = decoded.get_nowait()
        delta = segment.text if sent_any else segment.text.lstrip()
        if delta:
            sent_any = True
            yield _sse({"type": "transcript.text.delta", "delta": delta})
    if future.cancelled():
        error = ApiError(503, "the server is busy; the request was shed", error_type="server_error")
        yield _sse({"type": "error", **error.body()})
        return
    try:
        transcription = future.result()
    except BackendError as exc:
        error = ApiError(500, f"transcription failed: {exc}", error_type="server_error")
        yield _sse({"type": "error", **error.body()})
        return
    done: dict[str, Any] = {"type": "transcript.text.done", "text": transcription.text}
    if with_logprobs:
        done["logprobs"] = formats.logprobs(transcription)
    done["usage"] = formats.usage(duration_s)
    yield _sse(done)


async def _stream_chunks(
    answers: AsyncIterator[Transcription], duration_s: float, with_logprobs: bool
) -> AsyncIterator[str]:
    """Deltas chunk by chunk, each as soon as its chunk is transcribed, then the whole text."""
    texts: list[str] = []
    answered: list[Transcription] = []
    try:
        async for answer in answers:
            answered.append(answer)
            for segment in answer.segments:
                delta = segment.text if texts else segment.text.lstrip()
                if delta:
                    texts.append(segment.text)
                    yield _sse({"type": "transcript.text.delta", "delta": delta})
    except (BackendError, ApiError) as exc:
        error = (
            exc
            if isinstance(exc, ApiError)
            else ApiError(500, f"transcription failed: {exc}", error_type="server_error")
        )
        yield _sse({"type": "error", **error.body()})
        return
    done: dict[str, Any] = {"type": "transcript.text.done", "text": "".join(texts).strip()}
    if with_logprobs:
        done["logprobs"] = [lp for answer in answered for lp in formats.logprobs(answer)]
    done["usage"] = formats.usage(duration_s)
    yield _sse(done)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def _render(
    transcription: Transcription,
    response_format: str,
    task: str,
    duration_s: float,
    granularities: set[str],
    with_logprobs: bool = False,
) -> Response:
    if response_format == "json":
        body = formats.as_json(transcription, duration_s)
        if with_logprobs:
            body["logprobs"] = formats.logprobs(transcription)
        return JSONResponse(body)
    if response_format == "text":
        return PlainTextResponse(formats.as_text(transcription))
    if response_format == "srt":
        return PlainTextResponse(formats.as_srt(transcription))
    if response_format == "vtt":
        return PlainTextResponse(formats.as_vtt(transcription), media_type="text/vtt")
    body = formats.as_verbose_json(
        transcription,
        task=task,
        duration_s=duration_s,
        words="word" in granularities,
        segments=not granularities or "segment" in granularities,
    )
    return JSONResponse(body)
