"""Which paths of the workspace nobody watches: what `.gitignore` files ignore, plus fixed paths.

Matched by `pathspec`, git's own wildmatch rules; each `.gitignore` applies below its own directory,
as in git.  `.git/` is always left out, and the caller adds its own paths (the journal's directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pathspec

ALWAYS_IGNORED = (".git",)

Specs = list[tuple[str, pathspec.GitIgnoreSpec]]  # (directory prefix, its .gitignore), outermost first


class IgnoreRules:
    """`.gitignore` files anywhere in the tree (each applies below its own directory), plus fixed paths."""

    def __init__(self, root: Path, extra: Iterable[str] = ()) -> None:
        self.root = root
        self.extra = tuple(p.rstrip("/") for p in extra if p)
        self._specs: Specs = []
        self.reload()

    def reload(self) -> None:
        """Read every `.gitignore` again (the watcher calls this when one changes)."""
        specs: Specs = []
        for directory, dirs, files in os.walk(self.root):
            rel_dir = os.path.relpath(directory, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            dirs[:] = [d for d in dirs if not self.ignored(join_relative(rel_dir, d), True, specs)]
            if ".gitignore" in files:
                spec = self._load(Path(directory) / ".gitignore")
                if spec is not None:
                    specs.append((rel_dir + "/" if rel_dir else "", spec))
        self._specs = specs

    @staticmethod
    def _load(path: Path) -> pathspec.GitIgnoreSpec | None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, rel: str, is_dir: bool, specs: Specs | None = None) -> bool:
        """Whether `rel` (a POSIX path relative to the root) is left out of the index."""
        first = rel.split("/", 1)[0]
        if first in ALWAYS_IGNORED:
            return True
        for prefix in self.extra:
            if rel == prefix or rel.startswith(prefix + "/"):
                return True
        target = rel + "/" if is_dir else rel
        for base, spec in self._specs if specs is None else specs:
            if target.startswith(base) and spec.match_file(target[len(base) :]):
                return True
        return False


def join_relative(directory: str, name: str) -> str:
    """`name` inside `directory`, both POSIX paths relative to the root ("" is the root)."""
    return f"{directory}/{name}" if directory else name
