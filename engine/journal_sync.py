"""The journal's sync thread: the one thread that runs `fdatasync` for a journal, off the event loop.

An agent's lock request is answered only once its grant is durable, so the time from "records
written" to "reply may go" is on every round trip.  `asyncio.to_thread` put each fsync through the
default thread pool: a task created, a pool future wrapped in an asyncio one, and a pool thread
woken through the executor's queue.  A thread of its own that does nothing but wait for a request,
sync and call back onto the loop is the shortest way there is without blocking the loop (where a
dashboard draws and other agents' messages are decided while the disk works).

`fdatasync` rather than `fsync`: an appended file's new size is part of what it flushes (the data
could not be read back without it), and the timestamps it skips are not part of the journal.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable

Done = Callable[[OSError | None], None]  # called on the loop with the sync's error, or None


class SyncThread:
    """Runs `fdatasync(fd)` for each request, in order, and reports back on the requester's loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._requests: queue.SimpleQueue[tuple[int, asyncio.AbstractEventLoop, Done] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fd: int, loop: asyncio.AbstractEventLoop, done: Done) -> None:
        """Sync `fd`; `done(error)` then runs on `loop` (the thread starts with the first request)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._requests.put((fd, loop, done))

    def stop(self) -> None:
        """Finish the requests already submitted, then end the thread (before the fd is closed)."""
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            fd, loop, done = request
            error: OSError | None = None
            try:
                os.fdatasync(fd)
            except OSError as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(done, error)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                pass
