"""The lock manager's wait queue: requests in arrival order, found by the paths they wait on."""

from __future__ import annotations

from collections.abc import Iterator

from engine.lock_records import QueuedItem, QueuedRequest
from engine.path_index import PathIndex
from engine.resources import LockError


class WaitQueue:
    """Queued requests by arrival number (`seq`), by request id, and by every path they wait on."""

    def __init__(self) -> None:
        self.requests: dict[int, QueuedRequest] = {}  # seq -> request, in arrival order (read it, never write)
        self._waiting: PathIndex[tuple[int, int], QueuedItem] = PathIndex()
        self._seq_of: dict[str, int] = {}
        self.next_seq = 1

    def __bool__(self) -> bool:
        return bool(self.requests)

    def __iter__(self) -> Iterator[QueuedRequest]:
        return iter(list(self.requests.values()))

    def get(self, seq: int) -> QueuedRequest | None:
        return self.requests.get(seq)

    def holds(self, request_id: str) -> bool:
        return request_id in self._seq_of

    def new_request_id(self, seq: int) -> str:
        request_id = f"R{seq}"
        while request_id in self._seq_of:
            request_id += "'"
        return request_id

    def put(self, request: QueuedRequest) -> None:
        """Queue a request decided at position `next_seq` (anything else is a stale decision)."""
        if request.seq != self.next_seq:
            raise LockError(f"a stale decision: queue position {request.seq} was decided, {self.next_seq} is next")
        self.next_seq += 1
        self.requests[request.seq] = request
        self._seq_of[request.request_id] = request.seq
        for index, item in enumerate(request.items):
            self._waiting.put(item.path, (request.seq, index), QueuedItem(request, item))

    def remove(self, request: QueuedRequest) -> None:
        del self.requests[request.seq]
        del self._seq_of[request.request_id]
        for index, item in enumerate(request.items):
            self._waiting.pop(item.path, (request.seq, index))

    def withdraw(self, request_id: str) -> list[str]:
        """Remove a request by id; the paths it waited on ([] when it is not queued)."""
        seq = self._seq_of.get(request_id)
        if seq is None:
            return []
        request = self.requests[seq]
        self.remove(request)
        return [item.path for item in request.items]

    def overlapping(self, path: str) -> list[QueuedItem]:
        """The queued paths that overlap `path` (on it, above it or below it)."""
        return self._waiting.overlapping(path)

    def requests_of(self, owner: str) -> list[str]:
        """The ids of `owner`'s queued requests, in arrival order."""
        return [request.request_id for request in self.requests.values() if request.owner == owner]

    def owners(self) -> set[str]:
        return {request.owner for request in self.requests.values()}
