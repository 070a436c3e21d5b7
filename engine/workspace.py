"""Where a sprint works: the user's directory as is, or a scratch copy of the plan's workspace."""

from __future__ import annotations

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
    return target


def prepare_workspace(plan: Plan, requested: str | Path | None) -> Path:
    """`--workspace DIR` is used as is (created if missing); otherwise a scratch copy."""
    if requested:
        path = Path(requested).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return scratch_copy(plan)
