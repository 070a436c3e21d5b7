"""Where a sprint works: the user's directory as is, or a scratch copy of the plan's workspace."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
import tempfile
from pathlib import Path

from engine.plan import Plan


def scratch_copy(plan: Plan, into: Path | None = None) -> Path:
    """Copy the plan's workspace (if any) to a fresh directory, so the sample stays pristine."""
    target = Path(tempfile.mkdtemp(prefix=f"sprintdeck-{plan.sprint}-")) if into is None else into
    target.mkdir(parents=True, exist_ok=True)
    if plan.workspace is not None and plan.workspace.is_dir():
        shutil.copytree(plan.workspace, target, dirs_exist_ok=True, symlinks=True)
        _relink_inside(Path(os.path.realpath(plan.workspace)), target)
    return target


def _relink_inside(source: Path, copy: Path) -> None:
    """Point the copy's absolute symlinks into the sample at the same place in the copy.

    Copied verbatim they would lead back into the sample, outside the sprint's workspace, and
    their locks be refused at run time although `validate` found them inside.
    """
    for directory, names, files in os.walk(copy):
        for name in names + files:
            link = Path(directory) / name
            if not link.is_symlink():
                continue
            target = Path(os.readlink(link))
            if target.is_absolute() and target.is_relative_to(source):
                link.unlink()
                link.symlink_to(os.path.relpath(copy / target.relative_to(source), directory))


@dataclass
class ScratchWorkspace:
    """A `run` without `--workspace` works in a scratch copy, which is its own to clean up.

    Removed when the run ends with the sprint finished (its journal holds everything a replay
    needs); kept with `--keep-workspace`, and kept when the sprint did not finish (interrupted,
    full disk), because `run --resume` continues in the workspace its journal names.
    """

    path: Path
    finished: bool = False

    def leave(self, *, keep: bool) -> str | None:
        """Remove the copy or keep it; the sentence saying where a kept one is (None when removed)."""
        if keep:
            return f"workspace kept at {self.path} (--keep-workspace)"
        if not self.finished:
            return f"workspace kept at {self.path}: the sprint did not finish (run --resume continues in it)"
        shutil.rmtree(self.path, ignore_errors=True)
        return None


def prepare_workspace(plan: Plan, requested: str | Path | None) -> Path:
    """`--workspace DIR` is used as is (created if missing); otherwise a scratch copy."""
    if requested:
        path = Path(requested).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return scratch_copy(plan)
