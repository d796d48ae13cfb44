"""One bounded inference queue for the whole server, drained by worker threads.

Order: finals first, then partials (oldest first). Among finals, the owner (a session, or one
REST request's chunks) served least so far goes first, oldest first among equals. A partial is
stale as soon as a newer one for the same utterance arrives: the newer one takes its place in
the queue and the old one is dropped. At most one partial per utterance runs at a time (two
would only compete for the same cores); partials beyond ``max_queued_partials`` drop the oldest.
So under load partials thin out by themselves and finals never wait behind them, only behind
requests the workers are already running.

Batching: a backend with ``transcribe_batch`` (the local model) gets requests of different
owners that are queued at the same moment in one call, up to ``max_batch_size``, grouped by
the backend's ``batch_key``: partials with partials, finals with finals. With ``batch_finals``
a worker that takes a final also takes other finals waiting then, fairest first, leaving one
for each idle worker (never a chunk of a long upload: those stay one at a time); it does not
wait for more, as a final's latency is what the service is judged by. A worker that takes a
partial, when fewer are queued than fit and other utterances had partials in the last second,
waits ``batch_window_ms`` for them to arrive.

A blocking backend (the local model) runs in ``workers`` threads. An async backend (the remote
API) is awaited on the event loop by as many worker tasks as it allows concurrent requests, so
a slow remote call holds one slot, never a thread or another session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from server.backends.base import AnyTranscriber, SegmentCallback, is_async
from server.errors import BackendError
from server.transcription import RequestKind, TranscribeRequest, Transcription, Usage

log = logging.getLogger("streamscribe.scheduler")


_UNKNOWN = object()


@dataclass(eq=False)
class _Job:
    request: TranscribeRequest
    future: asyncio.Future[Transcription]
    on_segment: SegmentCallback | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
    batch_key: object = _UNKNOWN  # see InferenceScheduler._batch_key


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
        self,
        transcriber: AnyTranscriber,
        *,
        workers: int = 1,
        max_queued_partials: int = 64,
        max_batch_size: int = 1,
        batch_window_ms: float = 0.0,
        batch_finals: bool = False,
    ) -> None:
        self.transcriber = transcriber
        self.is_async = is_async(transcriber)
        concurrency = getattr(transcriber, "max_concurrency", workers)
        self.workers = max(1, concurrency if self.is_async else workers)
        self.max_queued_partials = max_queued_partials
        # 0: the backend says, once loaded (``suggested_batch_size``).
        self._batch_size_wanted = max_batch_size
        self.max_batch_size = max(max_batch_size, 1) if self._can_batch else 1
        self.batch_window_s = batch_window_ms / 1000
        self.batch_finals = batch_finals
        # Told of the kind and size of every batch run (metrics).
        self.batch_observer: Callable[[str, int], None] | None = None
        self._recent_partials: dict[tuple[str, int], float] = {}  # utterance -> last submit
        self.stats = SchedulerStats()
        # Told of every finished request: (backend, kind, run_s, queue_s, audio_s); metrics.
        self.observer: Callable[[str, str, float, float, float], None] | None = None
        self.ready = asyncio.Event()
        self.load_error: BaseException | None = None
        self._finals: deque[_Job] = deque()
        # Finals served per owner while it has work queued; forgotten when it has none.
        self._served: Counter[str] = Counter()
        self._running_bulk = 0
        self._busy_workers = 0  # workers running a request or a batch
        self._partials: OrderedDict[tuple[str, int], _Job] = OrderedDict()
        self._running_partials: set[tuple[str, int]] = set()
        self._has_work = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            1 if self.is_async else self.workers, thread_name_prefix="inference"
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def _can_batch(self) -> bool:
        return hasattr(self.transcriber, "transcribe_batch")

    async def start(self, *, load: bool = True) -> None:
        """Load the model in a thread, then start the workers. Errors land in ``load_error``."""
        if load:
            loop = asyncio.get_running_loop()
            try:
                if self.is_async:
                    await self.transcriber.start()  # type: ignore[union-attr]
                else:
                    await loop.run_in_executor(self._executor, self.transcriber.load)  # type: ignore[union-attr]
            except Exception as exc:
                log.error("model failed to load: %s", exc)
                self.load_error = exc
                return
        if self._batch_size_wanted == 0 and self._can_batch:
            self.max_batch_size = max(1, int(getattr(self.transcriber, "suggested_batch_size", 1)))
        self._tasks = [
            asyncio.create_task(self._work(), name=f"inference-worker-{index}")
            for index in range(self.workers)
        ]
        self.ready.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in [*self._finals, *self._partials.values()]:
            job.future.cancel()
        self._finals.clear()
        self._partials.clear()
        if self.is_async:
            with contextlib.suppress(Exception):
                await self.transcriber.close()  # type: ignore[union-attr]
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def streams_partials(self) -> bool:
        """Whether partial answers report text through ``on_segment`` before they finish."""
        return bool(getattr(self.transcriber, "streams_partials", False))

    @property
    def partial_backends(self) -> tuple[str, ...]:
        return tuple(getattr(self.transcriber, "partial_backends", ("local",)))

    @property
    def queued(self) -> int:
        return len(self._finals) + len(self._partials)

    @property
    def finals_queued(self) -> int:
        return sum(not job.future.cancelled() for job in self._finals)

    def submit(
        self, request: TranscribeRequest, *, on_segment: SegmentCallback | None = None
    ) -> asyncio.Future[Transcription]:
        """Queue a request; the future resolves with the answer or a ``BackendError``.

        ``on_segment`` is called from the worker thread with each segment as it is decoded.
        """
        job = _Job(request, asyncio.get_running_loop().create_future(), on_segment)
        if request.kind is RequestKind.FINAL:
            self._finals.append(job)
        else:
            key = (request.session_id, request.utterance_id)
            self._recent_partials[key] = job.enqueued_at
            stale = self._partials.get(key)
            if stale is not None:
                stale.future.cancel()
                self.stats.dropped_partials += 1
            self._partials[key] = job  # keeps the stale job's place: no starvation
            while len(self._partials) > self.max_queued_partials:
                _, oldest = self._partials.popitem(last=False)
                oldest.future.cancel()
                self.stats.dropped_partials += 1
        self._notify()
        return job.future

    def cancel(self, session_id: str, request_id: int) -> None:
        """Drop one queued final. Request ids count per session, so the session names it too:
        cancelling by id alone once dropped another session's final, which then never came."""
        for job in self._finals:
            if job.request.request_id == request_id and job.request.session_id == session_id:
                job.future.cancel()
        self._finals = deque(job for job in self._finals if not job.future.cancelled())

    def cancel_session(self, session_id: str) -> None:
        self._served.pop(session_id, None)
        for job in self._finals:
            if job.request.session_id == session_id:
                job.future.cancel()
        self._finals = deque(job for job in self._finals if not job.future.cancelled())
        for key in [key for key in self._partials if key[0] == session_id]:
            self._partials.pop(key).future.cancel()

    def _fairest_final(self) -> _Job | None:
        """The oldest final of the owner (session or REST request) served least so far: a
        request cut into many chunks takes turns with everyone else instead of going first.
        Chunks of long uploads leave the last worker free."""
        bulk_allowed = self._running_bulk < max(1, self.workers - 1)
        return self._fairest([job for job in self._finals if bulk_allowed or not job.request.bulk])

    def _fairest(self, finals: list[_Job]) -> _Job | None:
        """Of ``finals`` (in queue order), the oldest of the owner served least so far."""
        ranked = [
            (self._served[job.request.session_id], index, job) for index, job in enumerate(finals)
        ]
        return min(ranked, key=lambda item: item[:2])[2] if ranked else None

    def _notify(self) -> None:
        self._has_work.set()

    def _next_job(self) -> _Job | None:
        self._finals = deque(job for job in self._finals if not job.future.cancelled())
        job = self._fairest_final()
        if job is not None:
            self._finals.remove(job)
            self._served[job.request.session_id] += 1
            if job.request.bulk:
                self._running_bulk += 1
            return job
        for key, job in list(self._partials.items()):
            if job.future.cancelled():
                del self._partials[key]
            elif key not in self._running_partials:
                del self._partials[key]
                return job
        return None

    def _batch_key(self, job: _Job) -> object:
        """What ``job`` must share with the others of a batch; ``None``: it runs alone. A chunk
        of a long upload runs alone, and so does a request that streams its text as it is
        decoded (``on_segment``): a batch answers all at once. Asked of the backend once per
        job, as the backend may tokenize the prompt to answer."""
        if job.batch_key is _UNKNOWN:
            request = job.request
            job.batch_key = (
                None
                if request.bulk or job.on_segment is not None
                else self.transcriber.batch_key(  # type: ignore[union-attr]
                    request.audio, request.options, final=request.kind is RequestKind.FINAL
                )
            )
        return job.batch_key

    def _more_finals(self, first: _Job) -> list[_Job]:
        """Finals of other owners queued now that can share ``first``'s batch, fairest first,
        taken off the queue and counted as served. One waiting final is left for each idle
        worker: two finals side by side on two workers are done sooner than in one batch, whose
        every answer comes when the last is decoded. Only with ``batch_finals``: on two CPU
        cores batching finals cost final latency under load (benchmarks/RESULTS.md)."""
        key = self._batch_key(first) if self.batch_finals else None
        if key is None:
            return []
        owners = {first.request.session_id}
        taken: list[_Job] = []
        left_for_idle = self.workers - self._busy_workers
        while len(taken) < self.max_batch_size - 1:
            candidates = [
                job
                for job in self._finals
                if not job.future.cancelled()
                and job.request.session_id not in owners
                and self._batch_key(job) == key
            ]
            job = self._fairest(candidates)
            if job is None or len(candidates) <= left_for_idle:
                break
            self._finals.remove(job)
            self._served[job.request.session_id] += 1
            owners.add(job.request.session_id)
            taken.append(job)
        return taken

    def _more_partials(self, first: _Job, room: int) -> list[_Job]:
        """Queued partials that can share ``first``'s batch, oldest first, taken off the queue
        and marked running (no other worker may start another partial of their utterances)."""
        key = self._batch_key(first)
        if key is None or room <= 0:
            return []
        taken: list[_Job] = []
        for utterance, job in list(self._partials.items()):
            if len(taken) >= room:
                break
            if job.future.cancelled():
                del self._partials[utterance]
            elif utterance not in self._running_partials and self._batch_key(job) == key:
                del self._partials[utterance]
                self._running_partials.add(utterance)
                taken.append(job)
        return taken

    def _others_streaming(self, batch: list[_Job]) -> bool:
        """Whether utterances outside ``batch`` asked for partials in the last second: only
        then is a partial worth holding back for ``batch_window_ms``."""
        now = time.monotonic()
        for key, at in list(self._recent_partials.items()):
            if now - at > 1.0:
                del self._recent_partials[key]
        inside = {(job.request.session_id, job.request.utterance_id) for job in batch}
        return any(key not in inside for key in self._recent_partials)

    async def _gather_batch(self, first: _Job) -> list[_Job]:
        self._running_partials.add(_partial_key(first.request))
        batch = [first, *self._more_partials(first, self.max_batch_size - 1)]
        if (
            len(batch) < self.max_batch_size
            and self.batch_window_s > 0
            and self._others_streaming(batch)
        ):
            await asyncio.sleep(self.batch_window_s)
            batch += self._more_partials(first, self.max_batch_size - len(batch))
            for job in [job for job in batch if job.future.cancelled()]:
                batch.remove(job)  # its session ended while the batch waited
                self._running_partials.discard(_partial_key(job.request))
        return batch

    async def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                self._has_work.clear()
                await self._has_work.wait()
                continue
            self._busy_workers += 1
            try:
                await self._run(job)
            finally:
                self._busy_workers -= 1

    async def _run(self, job: _Job) -> None:
        if self.max_batch_size > 1:
            if job.request.kind is RequestKind.PARTIAL:
                batch = await self._gather_batch(job)
            else:
                batch = [job, *self._more_finals(job)]
            if len(batch) > 1:
                await self._run_batch(batch)
            elif batch:
                await self._run_one(batch[0])
            return
        await self._run_one(job)

    async def _run_batch(self, batch: list[_Job]) -> None:
        """Run requests of one kind from different owners as one model call."""
        loop = asyncio.get_running_loop()
        kind = batch[0].request.kind
        name = kind.name.lower()
        started = time.monotonic()
        items = [(job.request.audio, job.request.options) for job in batch]
        call = functools.partial(
            self.transcriber.transcribe_batch,  # type: ignore[union-attr]
            items,
            final=kind is RequestKind.FINAL,
        )
        try:
            answers = await loop.run_in_executor(self._executor, call)
        except Exception as exc:  # the batch failed as a whole: each request runs alone
            log.warning(
                "batch of %d %ss failed (%s); running them one by one", len(batch), name, exc
            )
            for job in batch:
                self._running_partials.discard(_partial_key(job.request))
            for job in batch:
                await self._run_one(job)
            return
        finished = time.monotonic()
        if self.batch_observer is not None:
            self.batch_observer(name, len(batch))
        share_s = (finished - started) / len(batch)
        for job, answer in zip(batch, answers, strict=True):
            request = job.request
            queue_ms = (started - job.enqueued_at) * 1000
            if kind is RequestKind.PARTIAL:
                self._running_partials.discard(_partial_key(request))
            else:
                self._forget_served_if_idle(request.session_id)
            self.stats.record(answer, request.duration_s)
            self.stats.busy_s += share_s
            if not job.future.done():
                job.future.set_result(dataclasses.replace(answer, queue_ms=queue_ms))
            if self.observer is not None:
                self.observer(answer.backend, name, share_s, queue_ms / 1000, request.duration_s)
        log.debug("batch of %d %ss ran %.0f ms", len(batch), name, (finished - started) * 1000)
        self._notify()

    def _forget_served_if_idle(self, owner: str) -> None:
        if not any(queued.request.session_id == owner for queued in self._finals):
            self._served.pop(owner, None)  # nothing waiting: its turn count resets

    async def _run_one(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        request = job.request
        partial_key = _partial_key(request)
        if request.kind is RequestKind.PARTIAL:
            self._running_partials.add(partial_key)
        started = time.monotonic()
        queue_ms = (started - job.enqueued_at) * 1000
        call = functools.partial(
            self.transcriber.transcribe,
            request.audio,
            request.options,
            final=request.kind is RequestKind.FINAL,
            **({"on_segment": job.on_segment} if job.on_segment else {}),
        )
        answer_backend = "failed"
        try:
            if self.is_async:
                answer = await call()
            else:
                answer = await loop.run_in_executor(self._executor, call)
        except BackendError as exc:
            self.stats.failed += 1
            if not job.future.done():
                job.future.set_exception(exc)
        except Exception as exc:  # a backend bug must not kill the worker
            log.exception("backend raised an unexpected error")
            self.stats.failed += 1
            if not job.future.done():
                job.future.set_exception(BackendError(f"internal backend error: {exc}"))
        else:
            self.stats.record(answer, request.duration_s)
            answer_backend = answer.backend or "unknown"
            if not job.future.done():
                job.future.set_result(dataclasses.replace(answer, queue_ms=queue_ms))
        finally:
            if request.bulk:
                self._running_bulk -= 1
                self._notify()  # a waiting chunk may run now
            if request.kind is RequestKind.FINAL:
                self._forget_served_if_idle(request.session_id)
            if request.kind is RequestKind.PARTIAL:
                self._running_partials.discard(partial_key)
                self._notify()  # a partial of this utterance may be waiting
            finished = time.monotonic()
            self.stats.busy_s += finished - started
            if self.observer is not None:
                self.observer(
                    answer_backend,
                    request.kind.name.lower(),
                    finished - started,
                    queue_ms / 1000,
                    request.duration_s,
                )
            log.debug(
                "%s %s utterance %s request %s: %.0f ms audio, queued %.0f ms, ran %.0f ms",
                request.session_id,
                request.kind.name.lower(),
                request.utterance_id,
                request.request_id,
                request.duration_s * 1000,
                queue_ms,
                (finished - started) * 1000,
            )


def _partial_key(request: TranscribeRequest) -> tuple[str, int]:
    return (request.session_id, request.utterance_id)
