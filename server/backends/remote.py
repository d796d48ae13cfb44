"""The remote backend: each request goes to an OpenAI-compatible ``/audio/transcriptions``
(OpenAI's gpt-4o-transcribe, gpt-4o-mini-transcribe or whisper-1; another StreamScribe; vLLM;
speaches) over one pooled ``httpx.AsyncClient``.

A final is retried on 429 (after ``Retry-After``), 5xx, timeouts, refused connections and
malformed answers, with exponential backoff and jitter, until its deadline. A partial is tried
once: a retried partial would arrive stale. Every attempt feeds the circuit breaker; while it is
open, requests fail at once (``RemoteError``), which is what lets ``failover`` answer them from
the local model without waiting. The API key is sent in the ``Authorization`` header and
nowhere else: never logged, never in an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from server.backends import remote_wire as wire
from server.core.errors import RemoteError, UsageError
from server.core.transcription import (
    PRIORITY_HEADER,
    DecodeOptions,
    Samples,
    Segment,
    Transcription,
)
from server.core.units import STREAM_RATE_HZ
from server.policy.resilience import Backoff, CircuitBreaker
from server.settings import RemoteSettings

log = logging.getLogger("streamscribe.remote")


class RemoteTranscriber:
    name = "remote"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        deadline_s: float = 15.0,
        max_concurrent: int = 8,
        max_retries: int = 3,
        response_format: str = "auto",
        stream_partials: str = "auto",
        breaker: CircuitBreaker | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_concurrency = max_concurrent
        self.max_retries = max_retries
        self.response_format = (
            wire.richest_format(model) if response_format == "auto" else response_format
        )
        self.streams_partials = (
            wire.streams_deltas(model) if stream_partials == "auto" else stream_partials == "on"
        )
        self.multilingual = not model.endswith(".en")
        self.breaker = breaker or CircuitBreaker()
        self.backoff = backoff or Backoff()
        self._api_key = api_key
        self._rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(max_concurrent)

    @classmethod
    def from_settings(cls, settings: RemoteSettings) -> RemoteTranscriber:
        if settings.remote_url is None:
            raise UsageError("the remote backend needs remote_url (--remote-url)")
        key = settings.remote_api_key
        return cls(
            settings.remote_url,
            model=settings.remote_model,
            api_key=key.get_secret_value() if key is not None else None,
            timeout_s=settings.remote_timeout_s,
            deadline_s=settings.remote_deadline_s,
            max_concurrent=settings.remote_max_concurrent,
            max_retries=settings.remote_max_retries,
            response_format=settings.remote_response_format,
            stream_partials=settings.remote_stream_partials,
            breaker=CircuitBreaker(
                failure_threshold=settings.breaker_failures,
                cooldown_s=settings.breaker_cooldown_s,
            ),
        )

    @property
    def description(self) -> str:
        return f"remote {self.model} at {self.base_url}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> None:
        """Start-up check: the key is accepted and the model is listed. A refused key or an
        unknown model raises ``UsageError``; an unreachable remote only logs a warning (it may
        come up later, and the circuit breaker covers the meantime)."""
        client = self._require_client()
        try:
            response = await client.get("/models")
        except httpx.HTTPError as exc:
            log.warning("remote %s is not reachable yet: %s", self.base_url, _describe(exc))
            return
        if response.status_code in (401, 403):
            raise UsageError(
                f"remote {self.base_url} refused the API key ({response.status_code}); "
                "set STREAMSCRIBE_REMOTE_API_KEY or OPENAI_API_KEY"
            )
        if response.status_code != 200:
            log.warning(
                "remote %s: GET /models answered %s; model %r not verified",
                self.base_url,
                response.status_code,
                self.model,
            )
            return
        try:
            listed = {entry["id"] for entry in response.json()["data"]}
        except (ValueError, KeyError, TypeError):
            log.warning(
                "remote %s: GET /models answer unreadable; model not verified", self.base_url
            )
            return
        if self.model not in listed:
            raise UsageError(
                f"remote {self.base_url} does not serve model {self.model!r}; "
                f"it lists: {', '.join(sorted(listed)) or 'nothing'}"
            )

    # ------------------------------------------------------------------ requests

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        started = time.monotonic()
        deadline = started + (self.deadline_s if final else self.timeout_s)
        body = wire.encode_wav(audio)
        stream = self.streams_partials and not final and on_segment is not None
        attempt = 0
        while True:
            if not self.breaker.allow(time.monotonic()):
                raise RemoteError("remote unavailable (circuit open after repeated failures)")
            try:
                async with self._slots:
                    remaining = deadline - time.monotonic()
                    answer = await asyncio.wait_for(
                        self._post(body, len(audio), options, stream, on_segment, not final),
                        timeout=max(0.05, min(self.timeout_s, remaining)),
                    )
            except (RemoteError, TimeoutError) as exc:
                error = _as_remote_error(exc, self.timeout_s)
                now = time.monotonic()
                if error.trips:
                    self.breaker.trip(now)
                elif final:
                    # Partials are best effort and shed first under load: their failures do
                    # not open the circuit for the finals.
                    self.breaker.record_failure(now)
                delay = self.backoff.delay_s(attempt, self._rng, error.retry_after_s)
                if (
                    not final
                    or not error.retryable
                    or attempt >= self.max_retries
                    or now + delay >= deadline
                ):
                    raise error from None
                log.info(
                    "remote attempt %d failed (%s); retrying in %.2f s", attempt + 1, error, delay
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.breaker.record_success()
            return Transcription(
                segments=answer[0],
                language=answer[1] or options.language,
                language_probability=1.0 if answer[1] else 0.0,
                duration_s=len(audio) / STREAM_RATE_HZ,
                backend=self.name,
                inference_ms=(time.monotonic() - started) * 1000,
                usage=answer[2],
            )

    async def _post(
        self,
        body: bytes,
        samples: int,
        options: DecodeOptions,
        stream: bool,
        on_segment: Callable[[Segment], None] | None,
        partial: bool,
    ) -> tuple[tuple[Segment, ...], str | None, Any]:
        client = self._require_client()
        path = "/audio/translations" if options.task == "translate" else "/audio/transcriptions"
        duration_s = samples / STREAM_RATE_HZ
        request = client.build_request(
            "POST",
            path,
            data=_as_form(
                wire.form_fields(self.model, options, self.response_format, stream=stream)
            ),
            files={"file": ("audio.wav", body, "audio/wav")},
            headers={PRIORITY_HEADER: "partial"} if partial else None,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise RemoteError(f"remote unreachable: {_describe(exc)}") from None
        try:
            if response.status_code != 200:
                content = await response.aread()
                raise wire.error_for_status(
                    response.status_code, content, response.headers, self._api_key, self.model
                )
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return await _read_events(response, duration_s, on_segment)
            parsed = wire.parse_body(await response.aread())
            return wire.parse_answer(parsed, duration_s)
        except httpx.HTTPError as exc:
            raise RemoteError(f"remote connection failed: {_describe(exc)}") from None
        finally:
            await response.aclose()

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RemoteError("the remote backend is not started", retryable=False)
        return self._client


async def _read_events(
    response: httpx.Response, duration_s: float, on_segment: Callable[[Segment], None] | None
) -> tuple[tuple[Segment, ...], str | None, Any]:
    """Deltas go to ``on_segment`` as they arrive; the done event's text is the answer."""
    async for line in response.aiter_lines():
        event = wire.sse_event(line)
        kind = event.get("type") if event is not None else None
        if event is None:
            continue
        if kind == "transcript.text.delta" and isinstance(event.get("delta"), str):
            if on_segment is not None:
                on_segment(Segment(text=event["delta"]))
        elif kind == "transcript.text.done" and isinstance(event.get("text"), str):
            text = event["text"].strip()
            segments = (Segment(text=" " + text, end_s=duration_s),) if text else ()
            return segments, None, wire.parse_usage(event.get("usage"), duration_s)
    raise wire.malformed("stream ended without transcript.text.done")


def _as_form(fields: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """httpx takes repeated form fields (``timestamp_granularities[]``) as lists."""
    form: dict[str, str | list[str]] = {}
    for name, value in fields:
        if name in form:
            existing = form[name]
            form[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            form[name] = value
    return form


def _as_remote_error(exc: BaseException, timeout_s: float) -> RemoteError:
    if isinstance(exc, RemoteError):
        return exc
    return RemoteError(f"remote timed out (no answer within {timeout_s:g} s)")


def _describe(exc: httpx.HTTPError) -> str:
    """The kind of failure, without the request (whose headers hold the key)."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused or failed ({kind})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({kind})"
    return kind
