"""The journal's sync thread: the one thread that runs `fdatasync` for a journal, off the event loop.

An agent's lock request is answered only once its grant is durable, so the time from "records
written" to "reply may go" is on every round trip.  `asyncio.to_thread` put each fsync through the
default thread pool: a task created, a pool future wrapped in an asyncio one, and a pool thread
woken through the executor's queue.  A thread of its own that does nothing but wait for a request,
sync and call back onto the loop is the shortest way there is without blocking the loop (where a
dashboard draws and other agents' messages are decided while the disk works).

A sync is run on the loop itself, though, while the disk is fast: when the last sync took under
`INLINE_BELOW`, the loop is held no longer than that, and the two thread hand-offs (the sync
thread woken, the loop woken back through its self-pipe) are saved from every lock round trip
(issue 14: 2-10% of a 1 ms acquire, benchmarks/BENCHMARKS.md).  Every sync is timed, on either
side, so a disk that slows down sends the next syncs to the thread, and one that recovers brings
them back; the first sync goes to the thread.

`fdatasync` rather than `fsync`: an appended file's new size is part of what it flushes (the data
could not be read back without it), and the timestamps it skips are not part of the journal.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Callable

Done = Callable[[OSError | None], None]  # called on the loop with the sync's error, or None
INLINE_BELOW = 0.001  # seconds: a sync expected to take less is run on the loop, not the thread


class SyncThread:
    """Runs `fdatasync(fd)` for each request, in order, and reports back on the requester's loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._requests: queue.SimpleQueue[tuple[int, asyncio.AbstractEventLoop, Done] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last = INLINE_BELOW  # seconds the last sync took (none yet: as if slow)

    def submit(self, fd: int, loop: asyncio.AbstractEventLoop, done: Done) -> None:
        """Sync `fd`; `done(error)` then runs on `loop`, in a later turn either way (so what runs
        between the request and its answer is the same): the sync is made here while the last
        one was quick (`INLINE_BELOW`), else by the thread (which starts with its first request)."""
        if self.quick:
            loop.call_soon(done, self.sync_here(fd))
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._requests.put((fd, loop, done))

    @property
    def quick(self) -> bool:
        """The last sync took under `INLINE_BELOW`: the next may be made on the loop."""
        return self._last < INLINE_BELOW

    def sync_here(self, fd: int) -> OSError | None:
        """`fdatasync(fd)` on the caller's thread, timed like the thread's; its error, or None."""
        return self._sync(fd)

    def stop(self) -> None:
        """Finish the requests already submitted, then end the thread (before the fd is closed)."""
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            fd, loop, done = request
            error = self._sync(fd)
            try:
                loop.call_soon_threadsafe(done, error)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                pass

    def _sync(self, fd: int) -> OSError | None:
        """`fdatasync(fd)`, timed; its error, or None."""
        start = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            return exc
        finally:
            self._last = time.perf_counter() - start
        return None
