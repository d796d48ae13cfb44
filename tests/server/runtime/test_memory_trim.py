"""Memory freed by model calls goes back to the system when the workers are idle: glibc's
``malloc_trim`` really returns a thread arena's free pages, and the trimmer asks for it only
when the scheduler has worked since the last trim and nothing runs or waits."""

from __future__ import annotations

import asyncio
import ctypes
import platform
import threading
from dataclasses import dataclass, field

import pytest

from server.core.transcription import RequestKind
from server.runtime.memory_trim import MemoryTrimmer, glibc_malloc_trim, resident_mb
from server.runtime.scheduler import InferenceScheduler
from tests.server.runtime.test_scheduler import GatedTranscriber, queue_settings, request, run
from tests.support import TIMEOUT_S

BLOCK = 64 * 1024  # under glibc's mmap threshold: served from an arena, kept there when freed


def _churn_in_a_thread(libc: ctypes.CDLL, blocks: int) -> None:
    """What a decode does to a worker thread's arena: many buffers, written, freed. The last
    stays allocated, so the arena's top cannot shrink and only a trim gives the rest back."""

    def churn() -> None:
        pointers = [libc.malloc(BLOCK) for _ in range(blocks)]
        for pointer in pointers:
            ctypes.memset(pointer, 1, BLOCK)
        for pointer in pointers[:-1]:
            libc.free(pointer)

    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_gives_a_thread_arenas_free_pages_back():
    trim = glibc_malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    trim()  # what earlier tests freed would otherwise be reused, not newly resident
    before = resident_mb()
    assert before is not None
    _churn_in_a_thread(libc, blocks=1600)  # 100 MB
    kept = resident_mb()
    assert kept is not None and kept - before > 80  # freed, yet still resident
    trim()
    after = resident_mb()
    assert after is not None and kept - after > 80


@dataclass
class Stats:
    busy_s: float = 0.0


@dataclass
class Scheduler:
    idle: bool = True
    stats: Stats = field(default_factory=Stats)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_trim_is_due_after_work_once_the_interval_passed_and_the_workers_are_idle():
    scheduler, clock, trims = Scheduler(), Clock(), []
    trimmer = MemoryTrimmer(scheduler, 30, lambda: trims.append(clock.now), clock)
    clock.now += 60
    assert not trimmer.due()  # nothing has run: nothing was freed
    scheduler.stats.busy_s = 0.4
    scheduler.idle = False
    assert not trimmer.due()  # a call runs: trimming now would slow it
    scheduler.idle = True
    assert trimmer.due()
    trimmer.trim_now()
    assert trims == [160.0] and not trimmer.due()  # nothing new since
    scheduler.stats.busy_s = 0.9
    clock.now += 10
    assert not trimmer.due()  # within the interval
    clock.now += 20
    assert trimmer.due()


def test_the_interval_zero_or_a_libc_without_malloc_trim_turns_it_off():
    scheduler = Scheduler(stats=Stats(busy_s=1.0))
    assert not MemoryTrimmer(scheduler, 0, lambda: None).enabled
    assert not MemoryTrimmer(scheduler, 30, None).due()


def test_the_scheduler_is_busy_while_a_call_runs_and_trimmed_once_it_finished():
    async def scenario() -> bool:
        backend = GatedTranscriber()
        scheduler = InferenceScheduler(backend, queue_settings(workers=1))
        await scheduler.start()
        trimmed = threading.Event()
        trimmer = MemoryTrimmer(scheduler, 0.001, trimmed.set)
        watcher = asyncio.create_task(trimmer.run(poll_s=0.001))
        answer = scheduler.submit(request(1, RequestKind.FINAL))
        await backend.started()
        idle_while_running = scheduler.idle
        backend.gate.set()
        await answer
        assert await asyncio.to_thread(trimmed.wait, TIMEOUT_S)
        watcher.cancel()
        await scheduler.close()
        return idle_while_running

    assert run(scenario) is False
