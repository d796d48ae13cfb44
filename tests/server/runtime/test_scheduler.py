"""The scheduler's executor: workers run what the queue policy (tested in
``tests/server/policy/test_queue.py``) hands them, on threads or the loop, alone or in batches.
Synchronised on the backend's calls, never on sleeps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from server.core.errors import BackendError
from server.core.transcription import (
    DecodeOptions,
    RequestKind,
    Segment,
    TranscribeRequest,
    Transcription,
)
from server.runtime.scheduler import InferenceScheduler
from server.settings import SchedulerSettings
from tests.support import TIMEOUT_S


def queue_settings(**overrides: object) -> SchedulerSettings:
    """No batching unless asked, no batch window."""
    return SchedulerSettings(**{"max_batch_size": 1, "batch_window_ms": 0, **overrides})


class GatedTranscriber:
    """Blocks every call until the test opens the gate; tells the test when a call starts."""

    name = "gated"
    multilingual = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = threading.Event()
        self._started = threading.Semaphore(0)

    def load(self) -> None:
        pass

    def transcribe(self, audio, options, *, final=True, on_segment=None):
        self.calls.append(options.prompt)
        self._started.release()
        self.gate.wait(TIMEOUT_S)
        if options.prompt.startswith("fail"):
            raise BackendError("the model failed")
        if options.prompt.startswith("bug"):
            raise ZeroDivisionError("a backend bug")
        return Transcription(segments=(Segment(text=options.prompt),), backend=self.name)

    async def started(self, count: int = 1) -> None:
        """Wait until ``count`` more calls have started."""
        for _ in range(count):
            assert await asyncio.to_thread(self._started.acquire, timeout=TIMEOUT_S)


class BatchingTranscriber(GatedTranscriber):
    """A gated backend that also runs requests in batches, recording each batch's prompts."""

    suggested_batch_size = 1

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def batch_key(self, audio, options, *, final=False):
        return ("short", final)

    def transcribe_batch(self, items, *, final=False):
        self.batches.append([options.prompt for _, options in items])
        self._started.release()
        self.gate.wait(TIMEOUT_S)
        if any(options.prompt.startswith("fail") for _, options in items):
            raise BackendError("the batch failed")
        return [
            Transcription(segments=(Segment(text=options.prompt),), backend=self.name)
            for _, options in items
        ]


def request(request_id, kind, session="s", utterance=1, prompt=None):
    name = prompt or f"{kind.name.lower()}-{session}-{utterance}-{request_id}"
    return TranscribeRequest(
        request_id,
        session,
        utterance,
        kind,
        np.zeros(160, np.float32),
        DecodeOptions(prompt=name),
        0,
        160,
    )


def run(scenario: Callable[[], object]) -> object:
    return asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_final_runs_on_a_free_worker_while_a_partial_runs():
    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, queue_settings(workers=2))
        await scheduler.start()
        partial = scheduler.submit(request(1, RequestKind.PARTIAL))
        await backend.started()
        final = scheduler.submit(request(2, RequestKind.FINAL))
        await backend.started()
        assert backend.calls == ["partial-s-1-1", "final-s-1-2"]
        backend.gate.set()
        answers = await asyncio.gather(partial, final)
        await scheduler.close()
        return answers, scheduler.stats

    answers, stats = run(scenario)
    assert [a.text for a in answers] == ["partial-s-1-1", "final-s-1-2"]
    assert all(a.queue_ms >= 0 for a in answers)
    assert stats.completed == 2 and stats.usage["gated"].requests == 2


def test_queued_work_of_a_cancelled_session_never_runs():
    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, queue_settings(workers=1))
        await scheduler.start()
        first = scheduler.submit(request(1, RequestKind.FINAL, session="a"))
        await backend.started()
        queued = [
            scheduler.submit(request(2, RequestKind.FINAL, session="b")),
            scheduler.submit(request(3, RequestKind.PARTIAL, session="b")),
        ]
        scheduler.cancel_session("b")
        backend.gate.set()
        answer = await first
        await scheduler.close()
        return answer, queued, backend.calls

    answer, queued, calls = run(scenario)
    assert answer.text == "final-a-1-1"
    assert all(future.cancelled() for future in queued)
    assert calls == ["final-a-1-1"]


def test_backend_failures_reach_the_request_and_the_worker_goes_on():
    async def scenario():
        backend = GatedTranscriber()
        backend.gate.set()
        scheduler = InferenceScheduler(backend, queue_settings(workers=1))
        await scheduler.start()
        failed = scheduler.submit(request(1, RequestKind.FINAL, prompt="fail"))
        buggy = scheduler.submit(request(2, RequestKind.FINAL, session="b", prompt="bug"))
        fine = scheduler.submit(request(3, RequestKind.FINAL, session="c"))
        results = await asyncio.gather(failed, buggy, fine, return_exceptions=True)
        await scheduler.close()
        return results, scheduler.stats

    (failed, buggy, fine), stats = run(scenario)
    assert isinstance(failed, BackendError) and str(failed) == "the model failed"
    assert isinstance(buggy, BackendError) and "internal backend error" in str(buggy)
    assert fine.text == "final-c-1-3"
    assert stats.failed == 2


def test_partials_queued_together_run_as_one_batch():
    async def scenario():
        backend = BatchingTranscriber()
        scheduler = InferenceScheduler(backend, queue_settings(workers=1, max_batch_size=3))
        await scheduler.start()
        blocker = scheduler.submit(request(1, RequestKind.FINAL, session="a"))
        await backend.started()  # the only worker is held by the final
        partials = [
            scheduler.submit(request(n, RequestKind.PARTIAL, session=f"s{n}")) for n in (2, 3, 4, 5)
        ]
        backend.gate.set()
        answers = await asyncio.gather(blocker, *partials)
        await scheduler.close()
        return backend, [answer.text for answer in answers]

    backend, texts = run(scenario)
    assert backend.calls == ["final-a-1-1", "partial-s5-1-5"]
    assert backend.batches == [["partial-s2-1-2", "partial-s3-1-3", "partial-s4-1-4"]]
    assert texts[1:] == ["partial-s2-1-2", "partial-s3-1-3", "partial-s4-1-4", "partial-s5-1-5"]


def test_a_failed_batch_runs_its_requests_one_by_one():
    async def scenario():
        backend = BatchingTranscriber()
        backend.gate.set()
        scheduler = InferenceScheduler(
            backend, queue_settings(workers=1, max_batch_size=4, batch_finals=True)
        )
        # Both are queued before any worker runs, so they meet in one batch.
        futures = [
            scheduler.submit(request(1, RequestKind.FINAL, session="a", prompt="fail-a")),
            scheduler.submit(request(1, RequestKind.FINAL, session="b")),
        ]
        await scheduler.start()
        results = await asyncio.gather(*futures, return_exceptions=True)
        await scheduler.close()
        return backend, results

    backend, (first, second) = run(scenario)
    assert backend.batches == [["fail-a", "final-b-1-1"]]
    assert backend.calls == ["fail-a", "final-b-1-1"]
    assert isinstance(first, BackendError)
    assert second.text == "final-b-1-1"


def test_batch_size_zero_takes_the_backends_suggestion_once_loaded():
    async def scenario(suggested):
        backend = BatchingTranscriber() if suggested is not None else GatedTranscriber()
        if suggested is not None:
            backend.suggested_batch_size = suggested
        scheduler = InferenceScheduler(backend, queue_settings(workers=1, max_batch_size=0))
        await scheduler.start()
        await scheduler.close()
        return scheduler.max_batch_size

    assert asyncio.run(scenario(4)) == 4  # the local model on a GPU
    assert asyncio.run(scenario(1)) == 1  # ... on CPU
    assert asyncio.run(scenario(None)) == 1  # a backend that cannot batch


def test_a_backend_that_fails_to_load_is_reported_not_raised():
    class Broken(GatedTranscriber):
        def load(self) -> None:
            raise BackendError("no weights")

    async def scenario():
        scheduler = InferenceScheduler(Broken(), queue_settings())
        await scheduler.start()
        await scheduler.close()
        return scheduler

    scheduler = run(scenario)
    assert str(scheduler.load_error) == "no weights"
    assert not scheduler.ready.is_set()
