"""Where a sprint works: the user's directory as is, or a scratch copy of the plan's workspace."""

from __future__ import annotations

import os
import shutil
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


def prepare_workspace(plan: Plan, requested: str | Path | None) -> Path:
    """`--workspace DIR` is used as is (created if missing); otherwise a scratch copy."""
    if requested:
        path = Path(requested).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return scratch_copy(plan)
