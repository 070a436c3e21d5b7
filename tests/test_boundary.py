"""The engine must stay usable without the UI: importing any engine module never loads textual."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[1]


def engine_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(engine.__path__, prefix="engine.")
    )


def test_engine_has_modules_to_check() -> None:
    assert {"engine.manager", "engine.locks", "engine.reducer", "engine.protocol"} <= set(engine_modules())


def test_importing_every_engine_module_does_not_import_textual() -> None:
    imports = "; ".join(f"import {name}" for name in engine_modules())
    code = f"import sys; {imports}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'widgets', 'app')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
