"""The architecture as a test: which package may import which, no import cycles, modules that fit.

The rules live in pyproject.toml (`[tool.sprintdeck.architecture]`).  Imports are read from the
source with `ast`, so every import statement counts: at module level, inside functions, and under
`if TYPE_CHECKING:` (a cycle that only type checking sees is still a cycle in the design).  The
checker runs on the real tree, and on small trees built here to show that it fails when a
forbidden import or a cycle is added.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Rules:
    packages: list[str]
    may_import: dict[str, list[str]]
    never_imports: dict[str, list[str]] = field(default_factory=dict)
    standard_library_only: list[str] = field(default_factory=list)
    max_module_lines: int = 500
    max_class_lines: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, pyproject: Path) -> Rules:
        table = tomllib.loads(pyproject.read_text())["tool"]["sprintdeck"]["architecture"]
        return cls(
            packages=table["packages"],
            may_import=table["may_import"],
            never_imports=table.get("never_imports", {}),
            standard_library_only=table.get("standard_library_only", {}).get("modules", []),
            max_module_lines=table.get("max_module_lines", 500),
            max_class_lines=table.get("max_class_lines", {}),
        )


def module_files(root: Path, packages: list[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package is its __init__)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, is_package: bool) -> set[str]:
    """Every module name an import statement in this file names (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _standard_library(imported: str, rules: Rules) -> bool:
    """The standard library, or a module that itself keeps to it (`from app.hook_link import X`)."""
    top = imported.split(".")[0]
    listed = rules.standard_library_only
    return top in sys.stdlib_module_names or top == "__future__" or imported in listed or imported.rpartition(".")[0] in listed


def check(root: Path, rules: Rules) -> list[str]:
    """Every breach of the rules in the tree at `root`, as sentences (empty: the tree is fine)."""
    modules = module_files(root, rules.packages)
    problems: list[str] = []
    graph: nx.DiGraph[str] = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name.split(".")[0]
        allowed = {package, *rules.may_import.get(package, [])}
        for imported in sorted(imports_of(name, path, path.name == "__init__.py")):
            top = imported.split(".")[0]
            if imported in modules and imported != name:
                graph.add_edge(name, imported)
            if top in rules.packages and top not in allowed:
                problems.append(f"{name} imports {imported}: {package} may import only {sorted(allowed)}")
            if top in rules.never_imports.get(package, []):
                problems.append(f"{name} imports {imported}: {package} never imports {top}")
            if name in rules.standard_library_only and not _standard_library(imported, rules):
                problems.append(f"{name} imports {imported}: it may import the standard library only")
        problems += _sizes(name, path, rules)
    for cycle in sorted(sorted(component) for component in nx.strongly_connected_components(graph) if len(component) > 1):
        problems.append(f"import cycle between {', '.join(cycle)}")
    return problems


def _sizes(name: str, path: Path, rules: Rules) -> list[str]:
    text = path.read_text()
    problems = []
    lines = text.count("\n")
    if lines > rules.max_module_lines:
        problems.append(f"{name} has {lines} lines (at most {rules.max_module_lines})")
    for node in ast.parse(text).body:
        limit = rules.max_class_lines.get(f"{name}.{getattr(node, 'name', '')}")
        if isinstance(node, ast.ClassDef) and limit is not None:
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                problems.append(f"{name}.{node.name} has {length} lines (at most {limit})")
    return problems


# ---------------------------------------------------------------- the real tree


def test_the_project_keeps_to_its_architecture() -> None:
    rules = Rules.of(ROOT / "pyproject.toml")
    assert check(ROOT, rules) == []


def test_the_rules_cover_the_packages_that_matter() -> None:
    rules = Rules.of(ROOT / "pyproject.toml")
    assert rules.may_import["engine"] == [] and "textual" in rules.never_imports["engine"]
    assert "app" not in rules.may_import["widgets"]
    modules = module_files(ROOT, rules.packages)
    assert {"engine.manager", "engine.lockdesk", "app.dashboard", "widgets.tasks"} <= set(modules)
    assert all(name in modules for name in rules.standard_library_only)


# ---------------------------------------------------------------- the checker fails when it should


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


RULES = Rules(
    packages=["engine", "widgets", "app"],
    may_import={"engine": [], "widgets": ["engine"], "app": ["engine", "widgets"]},
    never_imports={"engine": ["textual"]},
    standard_library_only=["app.hook"],
    max_module_lines=20,
    max_class_lines={"engine.manager.Manager": 3},
)
CLEAN = {
    "engine/__init__.py": "",
    "engine/a.py": "import json\n",
    "engine/b.py": "from engine import a\n",
    "widgets/__init__.py": "",
    "widgets/pane.py": "from engine.b import thing\n",
    "app/__init__.py": "",
    "app/main.py": "from widgets.pane import Pane\nfrom engine import a\n",
    "app/hook.py": "import json, os\n",
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert check(_tree(tmp_path, CLEAN), RULES) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"widgets/pane.py": "def show():\n    from app.main import run\n"}, "widgets.pane imports app.main: widgets may import only"),
        ({"engine/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from widgets.pane import Pane\n"},
         "engine.b imports widgets.pane: engine may import only ['engine']"),
        ({"engine/a.py": "import textual.app\n"}, "engine.a imports textual.app: engine never imports textual"),
        ({"app/hook.py": "import json\nimport pydantic\n"}, "app.hook imports pydantic: it may import the standard library only"),
        ({"engine/a.py": "def later():\n    from engine import b\n"}, "import cycle between engine.a, engine.b"),
        ({"engine/c.py": "from . import d\n", "engine/d.py": "from .c import x\n"}, "import cycle between engine.c, engine.d"),
        ({"engine/big.py": "x = 1\n" * 21}, "engine.big has 21 lines (at most 20)"),
        ({"engine/manager.py": "class Manager:\n    a = 1\n    b = 2\n    c = 3\n"}, "engine.manager.Manager has 4 lines (at most 3)"),
    ],
)
def test_a_breach_is_reported(tmp_path: Path, change: dict[str, str], expected: str) -> None:
    problems = check(_tree(tmp_path, {**CLEAN, **change}), RULES)
    assert any(problem.startswith(expected) for problem in problems), problems
