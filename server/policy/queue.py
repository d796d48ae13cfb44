"""The order in which the server's one inference queue runs requests. Pure: no threads, no
tasks, no clock of its own (``now`` is passed in), so every rule is tested in process.

Rules:

    rule                          effect
    ----------------------------  ------------------------------------------------------------
    finals before partials        a worker takes a partial only when no final may run
    fair finals                   among finals, the owner (a session, or one REST request's
                                  chunks) served least so far goes first, oldest first among
                                  equals; an owner's count resets when it has nothing queued
    bulk leaves a worker free     chunks of long uploads never take the last free worker
    a newer partial replaces      a partial of the same utterance takes the queued one's place
                                  (no starvation) and the old one is dropped
    one partial per utterance     never two partials of one utterance running at once, but
                                  a first-words partial (its utterance shows no text yet) may
                                  run beside one: the session asks for first words every
                                  100 ms of audio, oftener than a partial of base takes, and
                                  only a worker with nothing else to take runs it
    bounded partials              beyond ``max_queued_partials`` the oldest are dropped
    batches of finals             only with ``batch_finals``: other owners' finals with the same
                                  batch key, fairest first, leaving one for each idle worker
    batches of partials           queued partials with the same batch key, oldest first; worth
                                  waiting for only while other utterances are streaming (a
                                  partial asked for within ``STREAMING_RECENTLY_S``)

So under load partials thin out by themselves, and finals never wait behind them, only behind
requests the workers are already running.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from server.core.transcription import RequestKind, TranscribeRequest

STREAMING_RECENTLY_S = 1.0
# Partials of one utterance that may run at once while it shows no text (see the rules).
FIRST_WORDS_RUNNING_AT_MOST = 2

UtteranceKey = tuple[str, int]


class QueuedJob(Protocol):
    """What the queue needs of a job; the executor's job also carries its future."""

    @property
    def request(self) -> TranscribeRequest: ...

    @property
    def enqueued_at(self) -> float: ...

    def cancelled(self) -> bool: ...

    def cancel(self) -> object: ...


JobT = TypeVar("JobT", bound=QueuedJob)


def utterance_key(request: TranscribeRequest) -> UtteranceKey:
    return (request.session_id, request.utterance_id)


class InferenceQueue(Generic[JobT]):
    """Queued jobs and the bookkeeping of the running ones that the rules need.

    ``batch_key(job)`` says what a job must share with the others of a batch (``None``: it runs
    alone); it is asked only when batching is considered.
    """

    def __init__(
        self,
        *,
        workers: int,
        max_queued_partials: int,
        batch_key: Callable[[JobT], object],
    ) -> None:
        self.workers = workers
        self.max_queued_partials = max_queued_partials
        self.dropped_partials = 0
        self._batch_key = batch_key
        self._finals: deque[JobT] = deque()
        self._partials: OrderedDict[UtteranceKey, JobT] = OrderedDict()
        # Finals served per owner while it has work queued; forgotten when it has none.
        self._served: Counter[str] = Counter()
        self._running_partials: Counter[UtteranceKey] = Counter()
        self._running_bulk = 0
        self._recent_partials: dict[UtteranceKey, float] = {}  # utterance -> last submit

    # ------------------------------------------------------------------ figures

    @property
    def queued(self) -> int:
        return len(self._finals) + len(self._partials)

    @property
    def finals_queued(self) -> int:
        return sum(not job.cancelled() for job in self._finals)

    # ------------------------------------------------------------------ in

    def submit(self, job: JobT) -> None:
        request = job.request
        if request.kind is RequestKind.FINAL:
            self._finals.append(job)
            return
        key = utterance_key(request)
        self._recent_partials[key] = job.enqueued_at
        stale = self._partials.get(key)
        if stale is not None:
            stale.cancel()
            self.dropped_partials += 1
        self._partials[key] = job  # keeps the stale job's place: no starvation
        while len(self._partials) > self.max_queued_partials:
            _, oldest = self._partials.popitem(last=False)
            oldest.cancel()
            self.dropped_partials += 1

    def cancel(self, session_id: str, request_id: int) -> None:
        """Drop one queued final. Request ids count per session, so the session names it too:
        cancelling by id alone once dropped another session's final, which then never came."""
        for job in self._finals:
            if job.request.request_id == request_id and job.request.session_id == session_id:
                job.cancel()
        self._drop_cancelled_finals()

    def cancel_session(self, session_id: str) -> None:
        self._served.pop(session_id, None)
        for job in self._finals:
            if job.request.session_id == session_id:
                job.cancel()
        self._drop_cancelled_finals()
        for key in [key for key in self._partials if key[0] == session_id]:
            self._partials.pop(key).cancel()

    def take_all(self) -> list[JobT]:
        """Empty the queue (shutdown); the caller cancels what it gets."""
        jobs = [*self._finals, *self._partials.values()]
        self._finals.clear()
        self._partials.clear()
        return jobs

    # ------------------------------------------------------------------ out

    def next_job(self) -> JobT | None:
        """The job a free worker runs next, marked running; ``None`` when nothing may run."""
        self._drop_cancelled_finals()
        job = self._fairest_final()
        if job is not None:
            self._take_final(job)
            if job.request.bulk:
                self._running_bulk += 1
            return job
        for key, job in list(self._partials.items()):
            if job.cancelled():
                del self._partials[key]
            elif self._may_run_partial(job):
                del self._partials[key]
                self._running_partials[key] += 1
                return job
        return None

    def more_finals(
        self, first: JobT, *, max_batch_size: int, busy_workers: int, batch_finals: bool
    ) -> list[JobT]:
        """Finals of other owners queued now that can share ``first``'s batch, fairest first,
        taken off the queue and counted as served. One waiting final is left for each idle
        worker: two finals side by side on two workers are done sooner than in one batch, whose
        every answer comes when the last is decoded. Only with ``batch_finals``: on two CPU
        cores batching finals cost final latency under load (benchmarks/RESULTS.md)."""
        key = self._batch_key(first) if batch_finals else None
        if key is None:
            return []
        owners = {first.request.session_id}
        taken: list[JobT] = []
        left_for_idle = self.workers - busy_workers
        while len(taken) < max_batch_size - 1:
            candidates = [
                job
                for job in self._finals
                if not job.cancelled()
                and job.request.session_id not in owners
                and self._batch_key(job) == key
            ]
            job = self._fairest(candidates)
            if job is None or len(candidates) <= left_for_idle:
                break
            self._take_final(job)
            owners.add(job.request.session_id)
            taken.append(job)
        return taken

    def more_partials(self, first: JobT, room: int) -> list[JobT]:
        """Queued partials that can share ``first``'s batch, oldest first, taken off the queue
        and marked running (no other worker may start another partial of their utterances)."""
        key = self._batch_key(first)
        if key is None or room <= 0:
            return []
        taken: list[JobT] = []
        for utterance, job in list(self._partials.items()):
            if len(taken) >= room:
                break
            if job.cancelled():
                del self._partials[utterance]
            elif utterance not in self._running_partials and self._batch_key(job) == key:
                del self._partials[utterance]
                self._running_partials[utterance] += 1
                taken.append(job)
        return taken

    def others_streaming(self, batch: list[JobT], now: float) -> bool:
        """Whether utterances outside ``batch`` asked for partials recently: only then is a
        partial worth holding back for company."""
        for key, at in list(self._recent_partials.items()):
            if now - at > STREAMING_RECENTLY_S:
                del self._recent_partials[key]
        inside = {utterance_key(job.request) for job in batch}
        return any(key not in inside for key in self._recent_partials)

    def finished(self, job: JobT) -> None:
        """``job`` ran (or failed, or left a batch that waited): free what it held."""
        request = job.request
        if request.kind is RequestKind.PARTIAL:
            key = utterance_key(request)
            self._running_partials[key] -= 1
            if self._running_partials[key] <= 0:
                del self._running_partials[key]
            return
        if request.bulk:
            self._running_bulk -= 1
        if not any(queued.request.session_id == request.session_id for queued in self._finals):
            self._served.pop(request.session_id, None)  # nothing waiting: its count resets

    # ------------------------------------------------------------------ internals

    def _may_run_partial(self, job: JobT) -> bool:
        running = self._running_partials[utterance_key(job.request)]
        if job.request.options.first_words:
            return running < FIRST_WORDS_RUNNING_AT_MOST
        return running == 0

    def _drop_cancelled_finals(self) -> None:
        self._finals = deque(job for job in self._finals if not job.cancelled())

    def _take_final(self, job: JobT) -> None:
        self._finals.remove(job)
        self._served[job.request.session_id] += 1

    def _fairest_final(self) -> JobT | None:
        """The oldest final of the owner served least so far; chunks of long uploads leave the
        last worker free."""
        bulk_allowed = self._running_bulk < max(1, self.workers - 1)
        return self._fairest([job for job in self._finals if bulk_allowed or not job.request.bulk])

    def _fairest(self, finals: list[JobT]) -> JobT | None:
        """Of ``finals`` (in queue order), the oldest of the owner served least so far."""
        ranked = [
            (self._served[job.request.session_id], index, job) for index, job in enumerate(finals)
        ]
        return min(ranked, key=lambda item: item[:2])[2] if ranked else None
