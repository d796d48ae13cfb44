"""The remote backend (or the Ray backend) with an optional local model beside it.

Routing, per request:

    request   partial_backend   local model   served by
    --------  ----------------  ------------  ---------------------------------------------
    partial   local, auto       yes           local
    partial   remote, auto      no            remote (streamed deltas where the model can)
    partial   remote            yes           remote
    any       (alias -> local)  yes           local
    final     any               any           remote; on ``RemoteError`` the local model
                                              answers that request (failover), or the error
                                              stands when there is none

The circuit breaker inside ``RemoteTranscriber`` makes requests fail at once while the remote is
down, so failover then costs nothing, and a probe after the cooldown brings traffic back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from server.backends.base import DescribesItself, ForwardsRequests, Transcriber
from server.backends.remote import RemoteTranscriber
from server.core.errors import RemoteError
from server.core.transcription import (
    DecodeOptions,
    RequestKind,
    Samples,
    Segment,
    TranscribeRequest,
    Transcription,
)
from server.policy.resilience import CircuitBreaker
from server.settings import ServerSettings

log = logging.getLogger("streamscribe.failover")


def build(settings: ServerSettings, local: Transcriber | None = None) -> FailoverTranscriber:
    """The registry's builder for ``--backend remote``. ``local`` overrides the fallback model
    that ``remote_fallback`` would load (tests)."""
    from server.backends import local as local_backend

    remote = RemoteTranscriber.from_settings(settings.remote)
    if local is None and settings.remote_fallback == "local":
        local = local_backend.build(settings)
    return FailoverTranscriber(remote, local, local_workers=settings.workers)


class Primary(Protocol):
    """What the failover needs of the backend it guards (the remote API, the Ray pool)."""

    name: str
    multilingual: bool
    max_concurrency: int

    @property
    def streams_partials(self) -> bool: ...

    @property
    def breaker(self) -> CircuitBreaker: ...

    @property
    def description(self) -> str: ...

    async def start(self) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription: ...


class FailoverTranscriber:
    name = "remote"

    def __init__(
        self, remote: Primary, local: Transcriber | None = None, *, local_workers: int = 1
    ) -> None:
        self.remote = remote
        self.local = local
        self.local_workers = max(1, local_workers)
        self.multilingual = remote.multilingual
        self.max_concurrency = remote.max_concurrency + (self.local_workers if local else 0)
        self.partial_backends: tuple[str, ...] = ("remote", "local") if local else ("remote",)
        self.failovers = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def streams_partials(self) -> bool:
        return self.remote.streams_partials

    @property
    def description(self) -> str:
        local = self.local
        fallback = f"; fallback {local.description}" if isinstance(local, DescribesItself) else ""
        return f"{self.remote.description}{fallback}"

    @property
    def breaker(self) -> CircuitBreaker:
        return self.remote.breaker

    async def start(self) -> None:
        """Load the local model (if any), then check the remote: a refused key or an unknown
        model raises ``UsageError`` here, at start-up, rather than in every session."""
        await self.remote.start()
        if self.local is not None:
            self._executor = ThreadPoolExecutor(self.local_workers, thread_name_prefix="local")
            await asyncio.get_running_loop().run_in_executor(self._executor, self.local.load)
        await self.remote.check()

    async def close(self) -> None:
        await self.remote.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        call = self.remote.transcribe(audio, options, final=final, on_segment=on_segment)
        return await self._routed(call, audio, options, final, on_segment)

    async def _routed(
        self,
        primary: Coroutine[Any, Any, Transcription],
        audio: Samples,
        options: DecodeOptions,
        final: bool,
        on_segment: Callable[[Segment], None] | None,
    ) -> Transcription:
        """The routing table at the top: ``primary`` (the primary's call, not yet awaited), or
        the local model when the table says so or the primary fails."""
        if self.local is not None and (
            options.backend == "local" or (not final and options.partial_backend != "remote")
        ):
            primary.close()  # never awaited: the local model answers
            return await self._transcribe_locally(audio, options, final, on_segment)
        try:
            return await primary
        except RemoteError as exc:
            if self.local is None:
                raise
            if final:
                self.failovers += 1
                log.warning("%s failed (%s); the local model answers this request", self.name, exc)
            answer = await self._transcribe_locally(audio, options, final, on_segment)
            return dataclasses.replace(answer, failover_reason=str(exc))

    async def _transcribe_locally(
        self,
        audio: Samples,
        options: DecodeOptions,
        final: bool,
        on_segment: Callable[[Segment], None] | None,
    ) -> Transcription:
        assert self.local is not None and self._executor is not None
        call = functools.partial(
            self.local.transcribe,
            audio,
            options,
            final=final,
            **({"on_segment": on_segment} if on_segment else {}),
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)


class RequestFailover(FailoverTranscriber):
    """The failover in front of a primary that takes whole requests (the Ray pool): requests go
    on whole, and one the pool cannot answer is answered by the local model."""

    def __init__(
        self,
        remote: ForwardingPrimary,
        local: Transcriber | None = None,
        *,
        local_workers: int = 1,
    ) -> None:
        super().__init__(remote, local, local_workers=local_workers)
        self.name = remote.name
        self.forwarding = remote

    async def transcribe_request(self, request: TranscribeRequest) -> Transcription:
        final = request.kind is RequestKind.FINAL
        call = self.forwarding.transcribe_request(request)
        return await self._routed(call, request.audio, request.options, final, None)


class ForwardingPrimary(Primary, ForwardsRequests, Protocol):
    """A primary that takes whole requests."""
