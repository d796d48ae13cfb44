"""The inference queue's order, in process: no threads, no tasks, no sleeps."""

from __future__ import annotations

import dataclasses

import numpy as np

from server.core.transcription import DecodeOptions, RequestKind, TranscribeRequest
from server.policy.queue import STREAMING_RECENTLY_S, InferenceQueue


@dataclasses.dataclass(eq=False)
class Job:
    request: TranscribeRequest
    enqueued_at: float = 0.0
    was_cancelled: bool = False

    def cancelled(self) -> bool:
        return self.was_cancelled

    def cancel(self) -> bool:
        self.was_cancelled = True
        return True


def job(
    request_id,
    kind,
    session="s",
    utterance=1,
    *,
    bulk=False,
    at=0.0,
    language=None,
    first_words=False,
):
    return Job(
        TranscribeRequest(
            request_id,
            session,
            utterance,
            kind,
            np.zeros(160, np.float32),
            DecodeOptions(language=language, first_words=first_words),
            0,
            160,
            bulk=bulk,
        ),
        at,
    )


F, P = RequestKind.FINAL, RequestKind.PARTIAL


def by_kind(job: Job) -> object:
    """Batch key: by kind; a ``long`` language never batches (as the local model's long audio)."""
    if job.request.bulk or job.request.options.language == "long":
        return None
    return job.request.kind


def make(workers=1, max_queued_partials=64):
    return InferenceQueue(
        workers=workers, max_queued_partials=max_queued_partials, batch_key=by_kind
    )


def ids(jobs):
    return [(j.request.session_id, j.request.request_id) for j in jobs]


def drain(queue):
    """Run every job to completion, one at a time, in the queue's order."""
    order = []
    while (taken := queue.next_job()) is not None:
        order.append(taken)
        queue.finished(taken)
    return ids(order)


def test_finals_go_before_partials_and_partials_oldest_first():
    queue = make()
    for item in (job(1, P, "a"), job(2, P, "b"), job(3, F, "c"), job(4, P, "d")):
        queue.submit(item)
    assert drain(queue) == [("c", 3), ("a", 1), ("b", 2), ("d", 4)]


def test_a_newer_partial_replaces_the_queued_one_in_its_place():
    queue = make()
    stale, other, newer = job(1, P, "a"), job(2, P, "b"), job(3, P, "a")
    for item in (stale, other, newer):
        queue.submit(item)
    assert stale.cancelled() and queue.dropped_partials == 1
    assert drain(queue) == [("a", 3), ("b", 2)]


def test_never_two_partials_of_one_utterance_at_once():
    queue = make(workers=2)
    queue.submit(job(1, P))
    running = queue.next_job()
    queue.submit(job(2, P))
    assert queue.next_job() is None  # a worker is free, but the utterance is busy
    queue.submit(job(3, P, utterance=2))
    assert ids([queue.next_job()]) == [("s", 3)]  # another utterance may run
    queue.finished(running)
    assert ids([queue.next_job()]) == [("s", 2)]


def test_first_words_run_two_at_a_time_on_free_workers():
    # Until an utterance shows text its partials come every 100 ms, oftener than one of base
    # takes: a
    # free worker runs the newest beside the one running, but never a third, and no ordinary
    # partial runs beside them.
    queue = make(workers=3)
    queue.submit(job(1, P, first_words=True))
    first = queue.next_job()
    queue.submit(job(2, P, first_words=True))
    second = queue.next_job()
    assert ids([first, second]) == [("s", 1), ("s", 2)]
    queue.submit(job(3, P, first_words=True))
    assert queue.next_job() is None  # two of the utterance are running
    queue.finished(first)
    assert ids([queue.next_job()]) == [("s", 3)]
    queue.finished(second)
    queue.submit(job(4, P))
    assert queue.next_job() is None  # an ordinary partial waits for the utterance's last
    assert queue.finals_queued == 0


def test_partials_beyond_the_bound_drop_the_oldest():
    queue = make(max_queued_partials=2)
    first = job(1, P, "a")
    for item in (first, job(2, P, "b"), job(3, P, "c")):
        queue.submit(item)
    assert first.cancelled()
    assert drain(queue) == [("b", 2), ("c", 3)]


def test_finals_take_turns_between_owners():
    """A request cut into many chunks does not make a later short one wait for all of them."""
    queue = make()
    queue.submit(job(1, F, "long", 1))
    running = queue.next_job()
    for n in (2, 3, 4):
        queue.submit(job(n, F, "long", n))
    queue.submit(job(5, F, "short"))
    queue.finished(running)
    # "long" was served once, "short" never: short goes next although long's chunks are older.
    assert drain(queue) == [("short", 5), ("long", 2), ("long", 3), ("long", 4)]


def test_an_owner_with_nothing_queued_starts_its_count_again():
    queue = make()
    queue.submit(job(1, F, "a"))
    queue.finished(queue.next_job())  # "a" served once, then idle: forgotten
    queue.submit(job(2, F, "b"))
    running = queue.next_job()  # "b" served once, still running
    queue.submit(job(3, F, "b", 2))
    queue.submit(job(4, F, "a", 2))
    queue.finished(running)
    assert drain(queue) == [("a", 4), ("b", 3)]


def test_chunks_of_long_uploads_leave_a_worker_free():
    queue = make(workers=2)
    for n in (1, 2, 3):
        queue.submit(job(n, F, "upload", n, bulk=True))
    first = queue.next_job()
    assert queue.next_job() is None  # the second worker stays free for live sessions
    queue.submit(job(9, F, "live"))
    assert ids([queue.next_job()]) == [("live", 9)]
    queue.finished(first)
    assert ids([queue.next_job()]) == [("upload", 2)]


def test_cancelling_a_session_drops_its_queued_work():
    queue = make()
    mine = [job(1, F, "b"), job(2, P, "b")]
    queue.submit(job(1, F, "a"))
    for item in mine:
        queue.submit(item)
    queue.cancel_session("b")
    assert all(item.cancelled() for item in mine)
    assert drain(queue) == [("a", 1)]


def test_cancelling_a_request_leaves_other_sessions_requests_with_the_same_id():
    """Request ids count per session: a's cancel of its request 2 must not touch b's."""
    queue = make()
    mine, theirs = job(2, F, "a"), job(2, F, "b")
    queue.submit(mine)
    queue.submit(theirs)
    queue.cancel("a", 2)
    assert mine.cancelled() and not theirs.cancelled()
    assert drain(queue) == [("b", 2)]


def test_partials_batch_with_partials_oldest_first_up_to_the_room():
    queue = make()
    for n in (2, 3, 4, 5):
        queue.submit(job(n, P, f"s{n}"))
    queue.submit(job(6, P, "s6", language="long"))
    first = queue.next_job()
    assert ids([first, *queue.more_partials(first, 2)]) == [("s2", 2), ("s3", 3), ("s4", 4)]
    # The rest: s5 alone (room for more, but s6 never batches), then s6.
    fifth = queue.next_job()
    assert queue.more_partials(fifth, 2) == []
    assert ids([fifth, queue.next_job()]) == [("s5", 5), ("s6", 6)]


def test_finals_batch_only_when_asked_fairest_first_leaving_one_per_idle_worker():
    queue = make(workers=3)
    queue.submit(job(1, F, "x"))
    queue.next_job()  # one of three workers is busy
    for session in "abc":
        queue.submit(job(2, F, session))
    first = queue.next_job()
    assert queue.more_finals(first, max_batch_size=4, busy_workers=2, batch_finals=False) == []
    # Two workers busy (x, and this one): one idle worker keeps one final for itself.
    batch = queue.more_finals(first, max_batch_size=4, busy_workers=2, batch_finals=True)
    assert ids([first, *batch]) == [("a", 2), ("b", 2)]
    assert ids([queue.next_job()]) == [("c", 2)]


def test_a_batch_of_finals_takes_one_final_per_owner():
    queue = make()
    for item in (job(1, F, "a"), job(2, F, "a", 2), job(3, F, "b")):
        queue.submit(item)
    first = queue.next_job()
    batch = queue.more_finals(first, max_batch_size=4, busy_workers=1, batch_finals=True)
    assert ids([first, *batch]) == [("a", 1), ("b", 3)]


def test_chunks_never_join_a_batch():
    queue = make()
    queue.submit(job(1, F, "upload", bulk=True))
    queue.submit(job(2, F, "b"))
    first = queue.next_job()
    assert first.request.bulk
    assert queue.more_finals(first, max_batch_size=4, busy_workers=1, batch_finals=True) == []


def test_a_partial_waits_for_company_only_while_others_stream():
    queue = make()
    queue.submit(job(1, P, "x", at=10.0))
    alone = queue.next_job()
    assert not queue.others_streaming([alone], now=10.0)
    queue.submit(job(2, P, "y", at=10.2))
    assert queue.others_streaming([alone], now=10.3)
    assert not queue.others_streaming([alone], now=10.2 + STREAMING_RECENTLY_S + 0.1)


def test_figures_count_what_is_queued():
    queue = make()
    cancelled = job(2, F, "b")
    for item in (job(1, F, "a"), cancelled, job(3, P, "c")):
        queue.submit(item)
    cancelled.cancel()
    assert queue.queued == 3
    assert queue.finals_queued == 1
    assert len(queue.take_all()) == 3
    assert queue.queued == 0
