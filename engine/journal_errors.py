"""What goes wrong with a journal, in words: a file that cannot be read or written as asked
(`JournalError`, naming the line), a write or sync that failed (`JournalFailure`, saying what is
still valid), and what a recovery cut from a torn tail (`Recovery`).

Apart from `engine/journal.py`, which raises them, so that the writer's module is the file and its
rules only; everyone imports them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.os_errors import describe


class JournalError(Exception):
    """A journal that cannot be written or read as asked; names the file line (1-based; 0 for the file itself)."""

    def __init__(self, path: Path | str, line: int, seq: int | None, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")  # line 0: the file itself
        self.path = Path(path)
        self.line = line
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class Recovery:
    """What `read_journal(recover=True)` cut from a torn tail, and where the original went."""

    path: Path
    kept_records: int
    cut_bytes: int
    broken_copy: Path
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}: kept {self.kept_records} records, cut {self.cut_bytes} bytes of a torn "
            f"last record ({self.reason}); the original is in {self.broken_copy}"
        )


class JournalFailure(JournalError):
    """The journal could not be written (a full disk, a failed disk): nothing more can be acknowledged.

    `durable_seq` is the last record known to be on disk; the writer has cut the file back to it
    (best effort), so the journal reads as valid up to there and `--resume` continues from it.
    `started` is False when not even the header could be written (no journal file is left).
    """

    def __init__(self, path: Path, durable_seq: int, error: OSError, doing: str, *, started: bool = True) -> None:
        kept = f"the journal is valid up to seq {durable_seq}" if started else "no journal was written"
        super().__init__(path, durable_seq + 2 if started else 1, durable_seq + 1 if started else None,
                         f"cannot {doing}: {describe(error)}; {kept}")
        self.durable_seq = durable_seq
        self.os_error = error
        self.started = started
