"""The gateway side of the Ray Serve backend (``--backend ray``): every partial and final goes to
the ``Transcriber`` deployment (``server.runtime.ray_replica``) through an async
``DeploymentHandle``, which routes it to a replica with room.

Sessions stay here (VAD, protocols, prompt carry-over, resume); only model calls cross. A
request is sent whole (``ForwardsRequests``), its session id prefixed with this gateway's id,
so the replica's scheduler orders and sheds it as the one server's would.

Faults, as the remote backend handles them (``server.policy.resilience``): a final whose
replica died, restarted or did not answer within ``ray_timeout_s`` is tried again, on whichever
replica Serve routes it to, with backoff, until ``ray_deadline_s``; a partial is tried once (a
retried partial would arrive stale). Every final's failure feeds the circuit breaker; while it
is open, requests fail at once with ``RemoteError``, which sessions report as
``transcription_failed``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from server.backends.failover import RequestFailover
from server.core.errors import PartialShed, RemoteError, UsageError
from server.core.transcription import (
    DecodeOptions,
    RequestKind,
    Samples,
    Segment,
    TranscribeRequest,
    Transcription,
)
from server.policy.resilience import Backoff, CircuitBreaker
from server.settings import RaySettings, ServerSettings

log = logging.getLogger("streamscribe.ray")


def build(settings: ServerSettings) -> RayTranscriber | RequestFailover:
    """The registry's builder for ``--backend ray`` (with ``--ray-fallback local``, the local
    model answers what no replica can, as the remote backend's fallback does)."""
    from server.backends import local as local_backend

    pool = RayTranscriber(
        settings.ray,
        model=settings.model,
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_failures, cooldown_s=settings.breaker_cooldown_s
        ),
    )
    if settings.ray_fallback != "local":
        return pool
    local = local_backend.build(settings)
    return RequestFailover(pool, local, local_workers=settings.workers)


class RayTranscriber:
    name = "ray"

    def __init__(
        self,
        settings: RaySettings,
        *,
        model: str,
        breaker: CircuitBreaker | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.multilingual = not model.endswith(".en")
        self.max_concurrency = settings.ray_max_concurrent
        self.breaker = breaker or CircuitBreaker()
        self.backoff = backoff or Backoff()
        self.gateway_id = uuid.uuid4().hex[:12]
        self.retries = 0  # finals tried again (/stats)
        self._rng = rng or random.Random()
        self._handle: Any = None
        self._direct_ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Join the cluster as a driver and find the deployment; ``UsageError`` when it is not
        there or serves another model than ``--model``."""
        loop = asyncio.get_running_loop()
        self._handle = await loop.run_in_executor(None, self._connect)
        info = await self._handle.describe.remote()
        if info.model != self.model:
            raise UsageError(
                f"the Ray application {self.settings.ray_app!r} serves model {info.model!r}; "
                f"start the gateway with --model {info.model}"
            )
        self.multilingual = info.multilingual
        log.info(
            "ray backend: application %r at %s, model %s on %s",
            self.settings.ray_app,
            self.settings.ray_address,
            info.model,
            info.device,
        )

    def _connect(self) -> Any:
        try:
            import ray
            from ray import serve
        except ImportError as exc:
            raise UsageError(
                "the ray backend needs Ray Serve: pip install 'streamscribe[ray]'"
            ) from exc
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.settings.ray_address,
                    namespace=self.settings.ray_namespace,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(
                    f"cannot join the Ray cluster at {self.settings.ray_address}: {exc}"
                ) from exc
        try:
            return serve.get_app_handle(self.settings.ray_app)
        except Exception as exc:  # Serve raises RayServeException, and others before start
            raise UsageError(
                f"no application {self.settings.ray_app!r} on the Ray cluster at "
                f"{self.settings.ray_address}; run `streamscribe ray deploy` first ({exc})"
            ) from exc

    async def check(self) -> None:
        """``start`` has checked the deployment and its model already."""

    async def close(self) -> None:
        self._handle = None

    @property
    def streams_partials(self) -> bool:
        return False  # a replica answers a partial whole

    @property
    def description(self) -> str:
        settings = self.settings
        return f"{self.model} on the Ray application {settings.ray_app!r} at {settings.ray_address}"

    # ------------------------------------------------------------------ requests

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        """A request outside any session (the scheduler sends ``transcribe_request``)."""
        request = TranscribeRequest(
            request_id=next(self._direct_ids),
            session_id="direct",
            utterance_id=0,
            kind=RequestKind.FINAL if final else RequestKind.PARTIAL,
            audio=audio,
            options=options,
            start_samples=0,
            end_samples=len(audio),
        )
        return await self.transcribe_request(request)

    async def transcribe_request(self, request: TranscribeRequest) -> Transcription:
        final = request.kind is RequestKind.FINAL
        started = time.monotonic()
        settings = self.settings
        deadline = started + (settings.ray_deadline_s if final else settings.ray_timeout_s)
        owner = f"{self.gateway_id}/{request.session_id}"
        request = dataclasses.replace(request, session_id=owner)
        attempt = 0
        while True:
            if not self.breaker.allow(time.monotonic()):
                raise RemoteError("no Ray replica answers (circuit open after repeated failures)")
            try:
                answer = await self._attempt(request, deadline)
            except RemoteError as error:
                now = time.monotonic()
                if final:  # partials are best effort: they do not open the circuit
                    self.breaker.record_failure(now)
                delay = self.backoff.delay_s(attempt, self._rng)
                if not final or attempt >= settings.ray_max_retries or now + delay >= deadline:
                    raise
                log.info("ray attempt %d failed (%s); retry in %.2f s", attempt + 1, error, delay)
                attempt += 1
                self.retries += 1
                await asyncio.sleep(delay)
                continue
            self.breaker.record_success()
            if answer is None:
                raise PartialShed("the replica dropped a stale partial")
            return dataclasses.replace(answer, backend=self.name)

    async def _attempt(self, request: TranscribeRequest, deadline: float) -> Transcription | None:
        if self._handle is None:
            raise RemoteError("the ray backend is not started", retryable=False)
        timeout_s = max(0.05, min(self.settings.ray_timeout_s, deadline - time.monotonic()))
        response = self._handle.transcribe.remote(request)
        try:
            return await asyncio.wait_for(_awaited(response), timeout=timeout_s)
        except TimeoutError:
            response.cancel()
            raise RemoteError(f"no Ray replica answered within {timeout_s:.1f} s") from None
        except asyncio.CancelledError:
            response.cancel()  # the session ended: free the replica's slot too
            raise
        except Exception as exc:
            # Ray's errors (a replica that died or is unavailable, back pressure, an error
            # inside the replica) carry the replica's traceback: name the kind only.
            raise RemoteError(f"Ray replica failed ({type(exc).__name__})") from exc


async def _awaited(response: Awaitable[Any]) -> Any:
    return await response
