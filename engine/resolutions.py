"""Resolving a file's conflict: accept what is on disk, revert to the last good content, merge the
two changes three ways from their base, or escalate to the operator (DESIGN §7).

Each resolution works from the content the lock desk had kept for the path (engine/kept_content.py)
and is recorded as an event; afterwards the content on disk is the base of whoever still holds it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.events import ConflictEscalated, ConflictResolved, iso_from_ns
from engine.merge import MergeResult, merge3
from engine.file_index import FileIndex
from engine.kept_content import ABSENT, KeptContent
from engine.lock_records import Grant
from engine.recorder import Recorder


class ResolutionError(ValueError):
    """A resolution that cannot apply (no conflict, nothing kept to revert to, ...); nothing changed."""


class Resolutions:
    def __init__(self, workspace: Path, recorder: Recorder, index: FileIndex, kept: KeptContent,
                 holders: Callable[[str], list[Grant]], settle: Callable[[Iterable[str]], None]) -> None:
        self._workspace = workspace
        self._state = recorder.state
        self._emit = recorder.emit
        self._index = index
        self._kept = kept
        self._holders = holders
        self._settle = settle

    def _conflicted(self, path: str) -> None:
        file = self._state.files.get(path)
        if file is None or file.status != "conflict":
            raise ResolutionError(f"{path} is not in conflict")

    def _current(self, path: str) -> bytes | None:
        try:
            return self._index.read(path)
        except FileNotFoundError:
            return None

    def check(self, path: str, how: str) -> None:
        """Raise ResolutionError when `how` cannot apply to `path`; changes nothing."""
        self._conflicted(path)
        kept = self._kept.get(path)
        if how == "revert" and kept is None:
            raise ResolutionError(f"no last good content of {path} was kept (it was under no lock)")
        if how == "merge":
            if kept is None or kept.base is ABSENT or kept.good is ABSENT:
                raise ResolutionError(f"no merge base is known for {path}")
            if not (self._workspace / path).is_file():
                raise ResolutionError(f"{path} is gone from disk; accept or revert instead")

    def accept(self, path: str, by: str) -> None:
        """The current content (or absence) becomes the new base."""
        self.check(path, "accept")
        self._settle([path])
        self._rebase(path)
        self._resolved(path, "accept", by)

    def revert(self, path: str, by: str) -> None:
        """Put the last good content back (remove the file when it did not exist)."""
        self.check(path, "revert")
        good = self._kept.by_path[path].good
        self._write(path, None if good is ABSENT else self._kept.content(good))
        self._rebase(path)
        self._resolved(path, "revert", by)

    def merge(self, path: str, by: str) -> MergeResult:
        """Three-way merge base -> last good and base -> current; with markers, it stays a conflict."""
        self.check(path, "merge")
        kept = self._kept.by_path[path]
        assert kept.base is not None and kept.good is not None  # check() saw to it
        current = self._current(path) or b""
        result = merge3(self._kept.content(kept.base), self._kept.content(kept.good), current,
                        labels=("last good", "base", "current"))
        if not result.clean:
            self._emit(ConflictResolved(path=path, resolution="merge", by=by, status="conflict",
                                        conflicts=result.conflicts, tool=result.tool))
            return result
        self._write(path, result.content)
        self._rebase(path)
        self._resolved(path, "merge", by, tool=result.tool)
        return result

    def escalate(self, path: str, by: str, note: str | None) -> None:
        self._conflicted(path)
        self._emit(ConflictEscalated(path=path, by=by, note=note))

    def diff(self, path: str) -> str:
        """A unified diff from the last good content to what is on disk now (for the escalation modal)."""
        kept = self._kept.get(path)
        current = self._current(path)
        if kept is None:
            return unified_diff_of(path, None, current, kept=False)
        good = None if kept.good is ABSENT else self._kept.content(kept.good)
        return unified_diff_of(path, good, current)

    def _rebase(self, path: str) -> None:
        """After a resolution the content on disk is the base of whoever still holds the path."""
        self._kept.forget(path)
        if self._holders(path):
            self._kept.keep_base(path)

    def _write(self, path: str, content: bytes | None) -> None:
        target = self._workspace / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.sprintdeck-tmp")
            temporary.write_bytes(content)
            os.replace(temporary, target)
        self._index.reconcile(path)  # our own write: the stat cache absorbs it, no change is judged

    def _resolved(self, path: str, how: str, by: str, **extra: Any) -> None:
        entry = self._index.entries.get(path)
        if entry is None:
            self._emit(ConflictResolved(path=path, resolution=how, by=by, status="clean", deleted=True,
                                        checksum=None, size=None, mtime=None, **extra))
            return
        self._emit(ConflictResolved(path=path, resolution=how, by=by, status="clean", deleted=False,
                                    checksum=entry.checksum, size=entry.size, mtime=iso_from_ns(entry.mtime_ns), **extra))


def unified_diff_of(path: str, old: bytes | None, new: bytes | None, *, kept: bool = True) -> str:
    """A unified diff between two versions of `path` (None: absent); says so when nothing was kept."""
    before = (old or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    after = (new or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    old_name = f"a/{path}" if old is not None else "/dev/null"
    new_name = f"b/{path}" if new is not None else "/dev/null"
    header = "" if kept else f"# no last good content of {path} was kept (it was under no lock)\n"
    return header + "".join(difflib.unified_diff(before, after, old_name, new_name))
