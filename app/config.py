"""The user's settings file (XDG config dir): today, the chosen theme."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sprintdeck" / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """A missing or unreadable file means defaults; the dashboard must start anyway."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(values: dict[str, Any], path: Path | None = None) -> None:
    path = path or config_path()
    data = load_config(path) | values
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError:
        pass  # a read-only home must not stop the dashboard; the choice just is not remembered
