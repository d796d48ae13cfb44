"""Give the memory a model call freed back to the system once the workers go idle.

Every local model call allocates and frees tens of megabytes (features, encoder output, beam
state). glibc keeps what was freed in its arenas, one per thread and up to eight per core, so a
server's resident memory climbs to a plateau and then drifts up slowly (the soaks in
benchmarks/RESULTS.md). ``malloc_trim(0)`` hands the free pages of every arena back. It is
asked only when no model call runs or waits, and at most once per interval: the next call
faults its pages in again, which costs a few milliseconds, so trimming between every partial
would slow the partials for nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("streamscribe.memory")

Trim = Callable[[], None]


class BusyTime(Protocol):
    busy_s: float


class IdleAware(Protocol):
    """What the trimmer needs of the scheduler."""

    @property
    def idle(self) -> bool: ...

    @property
    def stats(self) -> BusyTime: ...


def glibc_malloc_trim() -> Trim | None:
    """glibc's ``malloc_trim(0)``, or ``None`` where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    function = getattr(libc, "malloc_trim", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int

    def trim() -> None:
        function(0)

    return trim


def resident_mb() -> float | None:
    """This process's resident memory, for the log line (Linux only)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class MemoryTrimmer:
    """Trims once per ``interval_s`` at most, when the scheduler is idle and has worked since
    the last trim (an idle server with nothing new freed has nothing to give back)."""

    def __init__(
        self,
        scheduler: IdleAware,
        interval_s: float,
        trim: Trim | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.interval_s = interval_s
        self._trim = trim
        self._clock = clock
        self._work_at_last_trim = 0.0
        self._last_trim = clock()
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and self._trim is not None

    def due(self) -> bool:
        return (
            self.enabled
            and self.scheduler.stats.busy_s > self._work_at_last_trim
            and self._clock() - self._last_trim >= self.interval_s
            and self.scheduler.idle
        )

    def trim_now(self) -> None:
        """Blocking: run it in a thread."""
        assert self._trim is not None
        before = resident_mb()
        self._work_at_last_trim = self.scheduler.stats.busy_s
        self._last_trim = self._clock()
        self._trim()
        self.trims += 1
        after = resident_mb()
        if before is not None and after is not None:
            log.debug("malloc_trim: resident %.0f MB -> %.0f MB", before, after)

    async def run(self, poll_s: float = 1.0) -> None:
        """Check every ``poll_s`` whether a trim is due; for the app's lifespan."""
        if not self.enabled:
            return
        while True:
            if self.due():
                await asyncio.to_thread(self.trim_now)
            await asyncio.sleep(poll_s)
