"""The interface every speech backend implements, and the optional abilities a backend may
declare. The scheduler asks ``isinstance(backend, CanBatch)``; it never probes attributes.

    ability              what the backend offers                    who uses it
    -------------------  -----------------------------------------  ------------------------
    Transcriber          ``transcribe`` that blocks (worker thread)  the scheduler
    AsyncTranscriber     ``transcribe`` awaited on the event loop     the scheduler
    CanBatch             several requests in one model call          the scheduler's batches
    StreamsPartials      partial text through ``on_segment`` early   live sessions
    ServesPartialsFrom   a choice of backends for partials           session options
    HasCircuitBreaker    a remote whose breaker state is worth       ``/stats``
                         reporting
    ForwardsRequests     whole requests (session, utterance, kind)   the scheduler
                         to a model service with its own queue
    RetriesRequests      finals tried again elsewhere, counted       ``/stats``
    DescribesItself      what runs: model, device, compute type     ``serve``'s ready line
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from typing_extensions import TypeIs

from server.core.transcription import (
    DecodeOptions,
    Samples,
    Segment,
    TranscribeRequest,
    Transcription,
)
from server.policy.resilience import CircuitBreaker

SegmentCallback = Callable[[Segment], None]


class Transcriber(Protocol):
    """A loaded speech model. ``transcribe`` blocks; the scheduler runs it in worker threads."""

    name: str
    multilingual: bool

    def load(self) -> None:
        """Load and warm up the model (blocking; may take seconds)."""
        ...

    def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """Transcribe 16 kHz float32 audio. ``final=False`` may trade accuracy for speed.

        ``on_segment`` is called (in the calling thread) with each segment as soon as it is
        decoded, before the whole answer is ready: that is what streamed responses send.

        Raises ``server.core.errors.BackendError`` when the model fails.
        """
        ...


class AsyncTranscriber(Protocol):
    """A backend whose calls wait on the network, not the CPU (the remote API): the scheduler
    awaits it on the event loop, up to ``max_concurrency`` requests at once."""

    name: str
    multilingual: bool
    max_concurrency: int

    async def start(self) -> None:
        """Connect and check the configuration; ``UsageError`` when it cannot work."""
        ...

    async def close(self) -> None: ...

    async def transcribe(
        self,
        audio: Samples,
        options: DecodeOptions,
        *,
        final: bool = True,
        on_segment: SegmentCallback | None = None,
    ) -> Transcription:
        """As ``Transcriber.transcribe``, awaited; ``on_segment`` runs on the event loop."""
        ...


AnyTranscriber = Transcriber | AsyncTranscriber


@runtime_checkable
class CanBatch(Protocol):
    """Requests of different sessions in one model call (one encoder, one decoder pass)."""

    @property
    def suggested_batch_size(self) -> int:
        """How many requests a batch should hold once the model is loaded (1: no batching)."""
        ...

    def batch_key(self, audio: Samples, options: DecodeOptions, *, final: bool = False) -> object:
        """Requests with equal keys can share one call; ``None``: this one runs alone."""
        ...

    def transcribe_batch(
        self, items: Sequence[tuple[Samples, DecodeOptions]], *, final: bool = False
    ) -> list[Transcription]:
        """One answer per item, in order; raises ``BackendError`` for the batch as a whole."""
        ...


@runtime_checkable
class StreamsPartials(Protocol):
    """Partial requests report text through ``on_segment`` before they finish (remote deltas)."""

    @property
    def streams_partials(self) -> bool: ...


@runtime_checkable
class ServesPartialsFrom(Protocol):
    """A session may choose which backend answers its partials (``partial_backend``)."""

    partial_backends: tuple[str, ...]


@runtime_checkable
class HasCircuitBreaker(Protocol):
    """A remote API guarded by a circuit breaker, whose state ``/stats`` reports."""

    @property
    def breaker(self) -> CircuitBreaker: ...


@runtime_checkable
class ForwardsRequests(Protocol):
    """An async backend that hands the whole request to a model service which queues, orders and
    sheds requests itself (Ray Serve replicas running our scheduler): it needs the session and
    utterance a request belongs to, not just its audio. ``PartialShed`` when the service dropped
    a stale partial; the answer's ``queue_ms`` is the wait inside the service."""

    async def transcribe_request(self, request: TranscribeRequest) -> Transcription: ...


@runtime_checkable
class RetriesRequests(Protocol):
    """Finals tried again after an attempt failed (a Ray replica that died)."""

    @property
    def retries(self) -> int: ...


@runtime_checkable
class DescribesItself(Protocol):
    """One line on what answers requests, once loaded (``cpu, int8``; a remote's URL)."""

    @property
    def description(self) -> str: ...


def is_async(transcriber: AnyTranscriber) -> TypeIs[AsyncTranscriber]:
    return inspect.iscoroutinefunction(transcriber.transcribe)
