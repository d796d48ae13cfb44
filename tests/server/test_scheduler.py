"""The shared inference queue: priorities, stale partials, one partial per utterance."""

import asyncio
import dataclasses
import threading

import numpy as np

from server.scheduler import InferenceScheduler
from server.transcription import (
    DecodeOptions,
    RequestKind,
    Segment,
    TranscribeRequest,
    Transcription,
)


class GatedTranscriber:
    """Blocks every call until the test opens the gate; records the order of calls."""

    name = "gated"
    multilingual = True

    def __init__(self):
        self.calls = []
        self.gate = threading.Event()

    def load(self):
        pass

    def transcribe(self, audio, options, *, final=True, on_segment=None):
        self.calls.append(options.prompt)
        self.gate.wait(10)
        return Transcription(segments=(Segment(text=options.prompt),), backend=self.name)


def request(request_id, kind, session="s", utterance=1):
    return TranscribeRequest(
        request_id,
        session,
        utterance,
        kind,
        np.zeros(160, np.float32),
        DecodeOptions(prompt=f"{kind.name.lower()}-{session}-{utterance}-{request_id}"),
        0,
        160,
    )


def test_finals_first_stale_partials_dropped_one_partial_per_utterance():
    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, workers=2)
        await scheduler.start()
        running = scheduler.submit(request(1, RequestKind.PARTIAL))
        await asyncio.sleep(0.05)  # worker 1 takes it
        stale = scheduler.submit(request(2, RequestKind.PARTIAL))
        newer = scheduler.submit(request(3, RequestKind.PARTIAL))
        await asyncio.sleep(0.05)
        assert stale.cancelled()
        # Worker 2 is idle but does not run a second partial of the same utterance.
        assert backend.calls == ["partial-s-1-1"]
        other = scheduler.submit(request(4, RequestKind.PARTIAL, utterance=2))
        final = scheduler.submit(request(5, RequestKind.FINAL))
        await asyncio.sleep(0.05)  # worker 2 takes the final before the other partial
        assert backend.calls == ["partial-s-1-1", "final-s-1-5"]
        backend.gate.set()
        answers = await asyncio.gather(running, newer, other, final)
        assert [a.text for a in answers] == [
            "partial-s-1-1",
            "partial-s-1-3",
            "partial-s-2-4",
            "final-s-1-5",
        ]
        assert all(a.queue_ms >= 0 for a in answers)
        await scheduler.close()

    asyncio.run(scenario())


def test_cancelling_a_session_drops_its_queued_work():
    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, workers=1)
        await scheduler.start()
        first = scheduler.submit(request(1, RequestKind.FINAL, session="a"))
        await asyncio.sleep(0.05)
        queued = [
            scheduler.submit(request(2, RequestKind.FINAL, session="b")),
            scheduler.submit(request(3, RequestKind.PARTIAL, session="b")),
        ]
        scheduler.cancel_session("b")
        assert all(f.cancelled() for f in queued)
        backend.gate.set()
        assert (await first).text == "final-a-1-1"
        await scheduler.close()

    asyncio.run(scenario())


def test_finals_take_turns_between_owners():
    """A request cut into many chunks does not make a later short one wait for all of them."""

    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, workers=1)
        await scheduler.start()
        first = scheduler.submit(request(1, RequestKind.FINAL, session="long", utterance=1))
        await asyncio.sleep(0.05)  # the worker holds it until the gate opens
        rest = [
            scheduler.submit(request(n, RequestKind.FINAL, session="long", utterance=n))
            for n in (2, 3, 4)
        ]
        short = scheduler.submit(request(5, RequestKind.FINAL, session="short"))
        backend.gate.set()
        await asyncio.gather(first, *rest, short)
        await scheduler.close()
        return backend.calls

    calls = asyncio.run(scenario())
    # "long" was served once, "short" never: short goes next although long's chunks are older.
    assert calls == [
        "final-long-1-1",
        "final-short-1-5",
        "final-long-2-2",
        "final-long-3-3",
        "final-long-4-4",
    ]


def test_chunks_of_long_uploads_leave_a_worker_free():
    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, workers=2)
        await scheduler.start()
        chunks = [
            scheduler.submit(
                dataclasses.replace(request(n, RequestKind.FINAL, "upload", n), bulk=True)
            )
            for n in (1, 2, 3)
        ]
        await asyncio.sleep(0.05)
        running_while_only_chunks = list(backend.calls)
        live = scheduler.submit(request(9, RequestKind.FINAL, session="live"))
        await asyncio.sleep(0.05)
        running_with_live = list(backend.calls)
        backend.gate.set()
        await asyncio.gather(*chunks, live)
        await scheduler.close()
        return running_while_only_chunks, running_with_live

    only_chunks, with_live = asyncio.run(scenario())
    assert only_chunks == ["final-upload-1-1"]  # one chunk at a time on two workers
    assert with_live == ["final-upload-1-1", "final-live-1-9"]  # the free worker takes it


class BatchingTranscriber(GatedTranscriber):
    """A gated backend that also runs requests in batches, recording each batch's prompts."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def batch_key(self, audio, options, *, final=False):
        return ("short", final) if options.language != "long" else None

    def transcribe_batch(self, items, *, final=False):
        self.gate.wait(10)
        self.batches.append([options.prompt for _, options in items])
        return [
            Transcription(segments=(Segment(text=options.prompt),), backend=self.name)
            for _, options in items
        ]


def test_partials_of_different_utterances_run_as_one_batch():
    async def scenario():
        backend = BatchingTranscriber()
        scheduler = InferenceScheduler(backend, workers=1, max_batch_size=3)
        await scheduler.start()
        blocker = scheduler.submit(request(1, RequestKind.FINAL, session="a"))
        await asyncio.sleep(0.05)  # the only worker is held by the final
        partials = [
            scheduler.submit(request(n, RequestKind.PARTIAL, session=f"s{n}")) for n in (2, 3, 4, 5)
        ]
        lone = dataclasses.replace(
            request(6, RequestKind.PARTIAL, session="s6"), options=DecodeOptions(language="long")
        )
        partials.append(scheduler.submit(lone))
        final = scheduler.submit(request(7, RequestKind.FINAL, session="b"))
        backend.gate.set()
        answers = await asyncio.gather(blocker, *partials, final)
        await scheduler.close()
        return backend, [answer.text for answer in answers]

    backend, texts = asyncio.run(scenario())
    # Finals first (each was alone in the queue when its turn came); then the partials at most
    # three at a time, oldest first; the one the backend will not batch runs alone.
    assert backend.calls == ["final-a-1-1", "final-b-1-7", "partial-s5-1-5", ""]
    assert backend.batches == [["partial-s2-1-2", "partial-s3-1-3", "partial-s4-1-4"]]
    assert texts[1:4] == ["partial-s2-1-2", "partial-s3-1-3", "partial-s4-1-4"]


def test_finals_waiting_together_run_as_one_batch_fairest_first_chunks_alone():
    async def scenario():
        backend = BatchingTranscriber()
        scheduler = InferenceScheduler(backend, workers=1, max_batch_size=3, batch_finals=True)
        await scheduler.start()
        blocker = scheduler.submit(request(1, RequestKind.FINAL, session="x"))
        await asyncio.sleep(0.05)  # the only worker is held
        chunk = dataclasses.replace(request(1, RequestKind.FINAL, session="upload"), bulk=True)
        waiting = [
            scheduler.submit(chunk),
            scheduler.submit(request(2, RequestKind.FINAL, session="a")),
            scheduler.submit(request(2, RequestKind.FINAL, session="b")),
            scheduler.submit(request(2, RequestKind.FINAL, session="c")),
            scheduler.submit(request(3, RequestKind.PARTIAL, session="a", utterance=2)),
            # Streams its text as it is decoded (a REST stream=true request): runs alone.
            scheduler.submit(request(1, RequestKind.FINAL, session="sse"), on_segment=print),
        ]
        backend.gate.set()
        answers = await asyncio.gather(blocker, *waiting)
        await scheduler.close()
        return backend, [answer.text for answer in answers]

    backend, texts = asyncio.run(scenario())
    # The upload's chunk is oldest and goes first, alone; then the three live finals share one
    # call (not with the partial, nor the streaming one); every answer reaches its request.
    assert backend.calls == ["final-x-1-1", "final-upload-1-1", "final-sse-1-1", "partial-a-2-3"]
    assert backend.batches == [["final-a-1-2", "final-b-1-2", "final-c-1-2"]]
    assert texts == [
        "final-x-1-1",
        "final-upload-1-1",
        "final-a-1-2",
        "final-b-1-2",
        "final-c-1-2",
        "partial-a-2-3",
        "final-sse-1-1",
    ]


def test_an_idle_worker_gets_a_final_of_its_own_rather_than_a_bigger_batch():
    async def scenario(batch_finals):
        backend = BatchingTranscriber()
        scheduler = InferenceScheduler(
            backend, workers=3, max_batch_size=4, batch_finals=batch_finals
        )
        await scheduler.start()
        blocker = scheduler.submit(request(1, RequestKind.FINAL, session="x"))
        await asyncio.sleep(0.05)  # one of three workers is held
        finals = [scheduler.submit(request(2, RequestKind.FINAL, session=s)) for s in "abc"]
        await asyncio.sleep(0.05)
        backend.gate.set()
        await asyncio.gather(blocker, *finals)
        await scheduler.close()
        return backend

    backend = asyncio.run(scenario(True))
    # Two idle workers, three finals: one batch of two, and the third on the other worker.
    assert backend.batches == [["final-a-1-2", "final-b-1-2"]]
    assert backend.calls == ["final-x-1-1", "final-c-1-2"]
    # Finals batching is off unless asked for: each final on its own.
    backend = asyncio.run(scenario(False))
    assert backend.batches == []
    assert sorted(backend.calls) == ["final-a-1-2", "final-b-1-2", "final-c-1-2", "final-x-1-1"]


def test_batch_size_zero_takes_the_backends_suggestion_once_loaded():
    async def scenario(suggested):
        backend = BatchingTranscriber()
        if suggested is not None:
            backend.suggested_batch_size = suggested
        scheduler = InferenceScheduler(backend, workers=1, max_batch_size=0)
        await scheduler.start()
        await scheduler.close()
        return scheduler.max_batch_size

    assert asyncio.run(scenario(4)) == 4  # the local model on a GPU
    assert asyncio.run(scenario(1)) == 1  # ... on CPU
    assert asyncio.run(scenario(None)) == 1  # a backend with no opinion: no batching


def test_a_partial_waits_the_batch_window_only_when_others_are_streaming():
    async def scenario():
        backend = BatchingTranscriber()
        backend.gate.set()
        scheduler = InferenceScheduler(backend, workers=1, max_batch_size=4, batch_window_ms=100)
        await scheduler.start()
        alone = await scheduler.submit(request(1, RequestKind.PARTIAL, session="x"))
        # Another session streams: the next partial waits for it, and they share a batch.
        first = scheduler.submit(request(2, RequestKind.PARTIAL, session="x", utterance=2))
        await asyncio.sleep(0.02)
        second = scheduler.submit(request(3, RequestKind.PARTIAL, session="y"))
        await asyncio.gather(first, second)
        await scheduler.close()
        return backend, alone

    backend, alone = asyncio.run(scenario())
    assert alone.text == "partial-x-1-1"
    assert backend.batches == [["partial-x-2-2", "partial-y-1-3"]]


def test_cancelling_a_request_leaves_other_sessions_requests_with_the_same_id():
    """Request ids count per session: session a's cancel of its request 2 must not touch
    session b's request 2 (that final would never come)."""

    async def scenario():
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, workers=1)
        await scheduler.start()
        blocker = scheduler.submit(request(1, RequestKind.FINAL, session="x"))
        await asyncio.sleep(0.05)
        mine = scheduler.submit(request(2, RequestKind.FINAL, session="a"))
        theirs = scheduler.submit(request(2, RequestKind.FINAL, session="b"))
        scheduler.cancel("a", 2)
        backend.gate.set()
        answer = await theirs
        await blocker
        await scheduler.close()
        return mine.cancelled(), answer.text

    mine_cancelled, their_text = asyncio.run(scenario())
    assert mine_cancelled and their_text == "final-b-1-2"
