"""Writing a small file whole or not at all: a temporary file beside it, then a rename.

A reader (an agent re-reading its token, Claude Code reading its settings) sees either the old
content or the new one, never half of it, and a crash mid-write leaves the old file as it was.
The temporary file is created 0600 with a name of its own (so a leftover or a concurrent writer
is never reused), and gets its final mode only once it holds the whole content.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text`; `mode` None keeps an existing file's mode (a new one: 0666 less umask).

    Raises OSError as `open` would; the temporary file never stays behind.
    """
    final_mode = _mode_for(path) if mode is None else mode
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, final_mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
