"""Newline-delimited JSON on a byte stream: one `IPCMessage.wire()` per line.

JSON text never contains a raw newline (it is escaped inside strings), so a newline ends a message.
The framer never holds more than the size limit of one line: a longer line is skipped as it
arrives and reported as `Oversize`, so a peer cannot make the reader buffer without bound, and
the lines after it are read normally.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine.protocol import MAX_MESSAGE_BYTES, IPCMessage

READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Oversize:
    """A line that exceeded the limit; `size` is how many bytes it had (the newline excluded)."""

    size: int

    def reason(self, limit: int = MAX_MESSAGE_BYTES) -> str:
        return f"message of {self.size} bytes exceeds the {limit} byte limit"


class LineFramer:
    """Split bytes into lines of at most `limit` bytes; blank lines are ignored."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._skipped: int | None = None  # bytes of an oversize line being skipped

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        lines: list[bytes | Oversize] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return lines
            self._keep(data[start:end])
            line = self._take()
            if line is not None and (isinstance(line, Oversize) or line.strip()):
                lines.append(line)
            start = end + 1

    def finish(self) -> list[bytes | Oversize]:
        """At the end of the stream: a last line without its newline still counts."""
        line = self._take()
        return [line] if line is not None and (isinstance(line, Oversize) or line.strip()) else []

    def _keep(self, piece: bytes) -> None:
        if self._skipped is not None:
            self._skipped += len(piece)
            return
        self._buffer += piece
        if len(self._buffer) > self.limit:
            self._skipped = len(self._buffer)
            self._buffer.clear()

    def _take(self) -> bytes | Oversize | None:
        if self._skipped is not None:
            size, self._skipped = self._skipped, None
            return Oversize(size)
        if not self._buffer:
            return None
        line = bytes(self._buffer).rstrip(b"\r")
        self._buffer.clear()
        return line


async def read_lines(reader: asyncio.StreamReader, limit: int = MAX_MESSAGE_BYTES) -> AsyncIterator[bytes | Oversize]:
    """Lines from `reader` until the peer closes (a reset counts as closing)."""
    framer = LineFramer(limit)
    while True:
        try:
            data = await reader.read(READ_CHUNK)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            for line in framer.finish():
                yield line
            return
        for line in framer.feed(data):
            yield line


def encode(message: IPCMessage) -> bytes:
    """The message's line on the wire."""
    return message.wire().encode() + b"\n"
