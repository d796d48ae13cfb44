"""The executor of the server's one inference queue: worker tasks that take jobs in the order
``server.policy.queue`` decides and run them on the backend.

A blocking backend (the local model) runs in ``workers`` threads. An async backend (the remote
API) is awaited on the event loop by as many worker tasks as it allows concurrent requests, so
a slow remote call holds one slot, never a thread or another session.

Batching: a backend that declares ``CanBatch`` (the local model) gets requests of different
owners that are queued at the same moment in one call, up to ``max_batch_size``, grouped by the
backend's ``batch_key``: partials with partials, finals with finals (only with
``batch_finals``). A worker that takes a partial, when fewer are queued than fit and other
utterances are streaming, waits ``batch_window_ms`` for them to arrive; a final never waits,
as a final's latency is what the service is judged by.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from server.backends.base import (
    AnyTranscriber,
    AsyncTranscriber,
    CanBatch,
    ForwardsRequests,
    SegmentCallback,
    ServesPartialsFrom,
    StreamsPartials,
    Transcriber,
    is_async,
)
from server.core.errors import BackendError, PartialShed
from server.core.transcription import RequestKind, TranscribeRequest, Transcription, Usage
from server.policy.queue import InferenceQueue
from server.settings import SchedulerSettings

log = logging.getLogger("streamscribe.scheduler")

_UNKNOWN = object()


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One finished request, as metrics and the load monitor see it."""

    backend: str
    kind: str
    run_s: float  # from the moment a worker took it to the answer
    queue_s: float  # waiting for one of our workers
    audio_s: float
    # Of ``run_s``, the wait inside a model service with its own queue (a Ray replica).
    backend_queue_s: float = 0.0
    session_id: str = ""  # the load of a session is forgotten when it closes

    def with_session(self, session_id: str, backend_queue_s: float) -> InferenceRecord:
        return dataclasses.replace(self, session_id=session_id, backend_queue_s=backend_queue_s)


# Told of every finished request: metrics and load.
InferenceObserver = Callable[[InferenceRecord], None]
# Told of the kind and size of every batch run (metrics).
BatchObserver = Callable[[str, int], None]


@dataclass(eq=False)
class _Job:
    request: TranscribeRequest
    future: asyncio.Future[Transcription]
    on_segment: SegmentCallback | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
    batch_key: object = _UNKNOWN  # asked of the backend once; see InferenceScheduler._key

    def cancelled(self) -> bool:
        return self.future.cancelled()

    def cancel(self) -> bool:
        return self.future.cancel()

    @property
    def kind_name(self) -> str:
        return self.request.kind.name.lower()


@dataclass
class BackendUsage:
    """What one backend was asked for: every request counts, partials included."""

    requests: int = 0
    audio_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, usage: Usage) -> None:
        self.requests += 1
        self.audio_seconds += usage.audio_seconds
        self.input_tokens += usage.input_tokens or 0
        self.output_tokens += usage.output_tokens or 0


@dataclass
class SchedulerStats:
    completed: int = 0
    dropped_partials: int = 0
    failed: int = 0
    failovers: int = 0
    busy_s: float = 0.0
    usage: dict[str, BackendUsage] = field(default_factory=dict)

    def record(self, answer: Transcription, audio_seconds: float) -> None:
        self.completed += 1
        if answer.failover_reason is not None:
            self.failovers += 1
        usage = answer.usage or Usage(audio_seconds=audio_seconds)
        self.usage.setdefault(answer.backend or "unknown", BackendUsage()).add(usage)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class InferenceScheduler:
    def __init__(
        self, transcriber: AnyTranscriber, settings: SchedulerSettings | None = None
    ) -> None:
        settings = settings or SchedulerSettings(workers=1, batch_window_ms=0)
        self.transcriber = transcriber
        self._async: AsyncTranscriber | None = None
        self._blocking: Transcriber | None = None
        if is_async(transcriber):
            self._async = transcriber
        else:
            self._blocking = transcriber
        self.is_async = self._async is not None
        self.workers = max(
            1, self._async_backend().max_concurrency if self.is_async else settings.workers
        )
        # 0: the backend says, once loaded (``suggested_batch_size``).
        self._batch_size_wanted = settings.max_batch_size
        self.batcher = transcriber if isinstance(transcriber, CanBatch) else None
        self.max_batch_size = max(settings.max_batch_size, 1) if self.batcher else 1
        self.batch_window_s = settings.batch_window_ms / 1000
        self.batch_finals = settings.batch_finals
        self.batch_observer: BatchObserver | None = None
        self.observer: InferenceObserver | None = None
        self.stats = SchedulerStats()
        self.ready = asyncio.Event()
        self.load_error: BaseException | None = None
        self.queue: InferenceQueue[_Job] = InferenceQueue(
            workers=self.workers,
            max_queued_partials=settings.max_queued_partials,
            batch_key=self._key,
        )
        self._busy_workers = 0  # workers running a request or a batch
        self._has_work = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            1 if self.is_async else self.workers, thread_name_prefix="inference"
        )
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, load: bool = True) -> None:
        """Load the model in a thread, then start the workers. Errors land in ``load_error``."""
        if load:
            try:
                await self._load()
            except Exception as exc:
                log.error("model failed to load: %s", exc)
                self.load_error = exc
                return
        if self._batch_size_wanted == 0 and self.batcher is not None:
            self.max_batch_size = max(1, self.batcher.suggested_batch_size)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"inference-worker-{index}")
            for index in range(self.workers)
        ]
        self.ready.set()

    async def _load(self) -> None:
        if self.is_async:
            await self._async_backend().start()
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._blocking_backend().load)

    def _async_backend(self) -> AsyncTranscriber:
        assert self._async is not None
        return self._async

    def _blocking_backend(self) -> Transcriber:
        assert self._blocking is not None
        return self._blocking

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self.queue.take_all():
            job.cancel()
        if self.is_async:
            with contextlib.suppress(Exception):
                await self._async_backend().close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ what the backend offers

    @property
    def streams_partials(self) -> bool:
        """Whether partial answers report text through ``on_segment`` before they finish."""
        backend = self.transcriber
        return isinstance(backend, StreamsPartials) and backend.streams_partials

    @property
    def partial_backends(self) -> tuple[str, ...]:
        backend = self.transcriber
        return backend.partial_backends if isinstance(backend, ServesPartialsFrom) else ("local",)

    # ------------------------------------------------------------------ the queue

    @property
    def queued(self) -> int:
        return self.queue.queued

    @property
    def finals_queued(self) -> int:
        return self.queue.finals_queued

    @property
    def idle(self) -> bool:
        """No model call runs or waits."""
        return self._busy_workers == 0 and self.queue.queued == 0

    def submit(
        self, request: TranscribeRequest, *, on_segment: SegmentCallback | None = None
    ) -> asyncio.Future[Transcription]:
        """Queue a request; the future resolves with the answer or a ``BackendError``.

        ``on_segment`` is called from the worker thread with each segment as it is decoded.
        """
        job = _Job(request, asyncio.get_running_loop().create_future(), on_segment)
        self.queue.submit(job)
        self.stats.dropped_partials = self.queue.dropped_partials
        self._has_work.set()
        return job.future

    def cancel(self, session_id: str, request_id: int) -> None:
        self.queue.cancel(session_id, request_id)

    def cancel_session(self, session_id: str) -> None:
        self.queue.cancel_session(session_id)

    def _key(self, job: _Job) -> object:
        """What ``job`` must share with the others of a batch; ``None``: it runs alone (a chunk
        of a long upload; a request that streams its text, as a batch answers all at once)."""
        if job.batch_key is _UNKNOWN:
            request = job.request
            job.batch_key = (
                None
                if request.bulk or job.on_segment is not None or self.batcher is None
                else self.batcher.batch_key(
                    request.audio, request.options, final=request.kind is RequestKind.FINAL
                )
            )
        return job.batch_key

    # ------------------------------------------------------------------ workers

    async def _work(self) -> None:
        while True:
            job = self.queue.next_job()
            if job is None:
                self._has_work.clear()
                await self._has_work.wait()
                continue
            self._busy_workers += 1
            try:
                batch = await self._gather(job)
                if len(batch) > 1:
                    await self._run_batch(batch)
                elif batch:
                    await self._run_one(batch[0])
            finally:
                self._busy_workers -= 1

    async def _gather(self, first: _Job) -> list[_Job]:
        """``first`` and the jobs that share its model call."""
        if self.max_batch_size <= 1:
            return [first]
        if first.request.kind is RequestKind.FINAL:
            return [
                first,
                *self.queue.more_finals(
                    first,
                    max_batch_size=self.max_batch_size,
                    busy_workers=self._busy_workers,
                    batch_finals=self.batch_finals,
                ),
            ]
        batch = [first, *self.queue.more_partials(first, self.max_batch_size - 1)]
        if (
            len(batch) < self.max_batch_size
            and self.batch_window_s > 0
            and self.queue.others_streaming(batch, time.monotonic())
        ):
            await asyncio.sleep(self.batch_window_s)
            batch += self.queue.more_partials(first, self.max_batch_size - len(batch))
            for job in [job for job in batch if job.cancelled()]:
                batch.remove(job)  # its session ended while the batch waited
                self.queue.finished(job)
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        """Run requests of one kind from different owners as one model call."""
        assert self.batcher is not None
        loop = asyncio.get_running_loop()
        kind = batch[0].request.kind
        name = batch[0].kind_name
        started = time.monotonic()
        items = [(job.request.audio, job.request.options) for job in batch]
        call = functools.partial(
            self.batcher.transcribe_batch, items, final=kind is RequestKind.FINAL
        )
        try:
            answers = await loop.run_in_executor(self._executor, call)
        except Exception as exc:  # the batch failed as a whole: each request runs alone
            log.warning(
                "batch of %d %ss failed (%s); running them one by one", len(batch), name, exc
            )
            for job in batch:
                await self._run_one(job)
            return
        finished = time.monotonic()
        if self.batch_observer is not None:
            self.batch_observer(name, len(batch))
        share_s = (finished - started) / len(batch)
        for job, answer in zip(batch, answers, strict=True):
            self.queue.finished(job)
            self.stats.busy_s += share_s
            self._answered(job, answer, started)
            self._observe(job, answer.backend, share_s, started)
        log.debug("batch of %d %ss ran %.0f ms", len(batch), name, (finished - started) * 1000)
        self._has_work.set()

    async def _run_one(self, job: _Job) -> None:
        started = time.monotonic()
        answer_backend = "failed"
        backend_queue_s = 0.0
        try:
            answer = await self._call(job)
        except PartialShed:
            job.cancel()  # dropped downstream, as our queue drops a stale partial
            answer_backend = "shed"
        except BackendError as exc:
            self._failed(job, exc)
        except Exception as exc:  # a backend bug must not kill the worker
            log.exception("backend raised an unexpected error")
            self._failed(job, BackendError(f"internal backend error: {exc}"))
        else:
            answer_backend = answer.backend or "unknown"
            backend_queue_s = answer.queue_ms / 1000
            self._answered(job, answer, started)
        finally:
            self.queue.finished(job)
            self._has_work.set()  # a waiting chunk or partial of this utterance may run now
            run_s = time.monotonic() - started
            self.stats.busy_s += run_s
            if answer_backend != "shed":
                self._observe(job, answer_backend, run_s, started, backend_queue_s)

    async def _call(self, job: _Job) -> Transcription:
        request = job.request
        extra: dict[str, Any] = {"on_segment": job.on_segment} if job.on_segment else {}
        final = request.kind is RequestKind.FINAL
        if self.is_async:
            backend = self._async_backend()
            if isinstance(backend, ForwardsRequests):
                return await backend.transcribe_request(request)
            return await backend.transcribe(request.audio, request.options, final=final, **extra)
        call = functools.partial(
            self._blocking_backend().transcribe,
            request.audio,
            request.options,
            final=final,
            **extra,
        )
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _answered(self, job: _Job, answer: Transcription, started: float) -> None:
        self.stats.record(answer, job.request.duration_s)
        if not job.future.done():
            # Our wait, and the wait inside a model service that queues too (a Ray replica).
            queue_ms = (started - job.enqueued_at) * 1000 + answer.queue_ms
            job.future.set_result(dataclasses.replace(answer, queue_ms=queue_ms))

    def _failed(self, job: _Job, exc: BackendError) -> None:
        self.stats.failed += 1
        if not job.future.done():
            job.future.set_exception(exc)

    def _observe(
        self, job: _Job, backend: str, run_s: float, started: float, backend_queue_s: float = 0.0
    ) -> None:
        request = job.request
        queue_s = started - job.enqueued_at
        if self.observer is not None:
            self.observer(
                InferenceRecord(
                    backend, job.kind_name, run_s, queue_s, request.duration_s
                ).with_session(request.session_id, backend_queue_s)
            )
        log.debug(
            "%s %s utterance %s request %s: %.0f ms audio, queued %.0f ms, ran %.0f ms",
            request.session_id,
            job.kind_name,
            request.utterance_id,
            request.request_id,
            request.duration_s * 1000,
            queue_s * 1000,
            run_s * 1000,
        )
