"""The plan reader: the same values PyYAML's safe loader gives, each traceable to its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.marked_yaml import MarkedDict, UnreadableDocument, line_at, read_document

ROOT = Path(__file__).resolve().parent.parent
PLANS = sorted((ROOT / "sample_sprints").glob("**/*.yaml"))


class Reference(yaml.SafeLoader):
    """PyYAML's own safe loader, plus the one rule plans add: `1e5` is a number, as in JSON."""


Reference.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


@pytest.mark.parametrize("path", PLANS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_sample_plan_reads_as_yaml_safe_load_reads_it(path: Path) -> None:
    try:
        document, _, _ = read_document(path)
    except UnreadableDocument:
        with pytest.raises(yaml.YAMLError):
            yaml.load(path.read_text(), Loader=Reference)
        return
    assert document == yaml.load(path.read_text(), Loader=Reference)


def test_lines_anchors_merges_and_scalars(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "sprint: s\n"                          # 1
        "base: &b {kind: shell, n: 3}\n"      # 2
        "agents:\n"                            # 3
        "  - <<: *b\n"                         # 4
        "    id: one\n"                        # 5
        "    n: 4\n"                           # 6
        "  - *b\n"                             # 7
        "tasks:\n"                             # 8
        "  - {id: t, estimate: 1e3, day: 2024-01-02, ok: yes, none: ~}\n"  # 9
    )
    document, _, duplicates = read_document(plan)
    assert document["agents"][0] == {"kind": "shell", "n": 4, "id": "one"}  # the merge, then the override
    assert document["agents"][1] is document["base"]  # an alias is the anchored value
    task = document["tasks"][0]
    assert task["estimate"] == 1000.0 and task["ok"] is True and task["none"] is None
    assert str(task["day"]) == "2024-01-02"
    assert isinstance(document, MarkedDict) and duplicates == []
    assert line_at(document, ("agents", 0, "id")) == 5
    assert line_at(document, ("agents", 0, "n")) == 6
    assert line_at(document, ("tasks", 0, "estimate")) == 9
    assert line_at(document, ("tasks", 3)) == 8  # no such item: the nearest line that exists


def test_nesting_beyond_the_parsers_limit_is_a_reported_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("sprint: s\nagents: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(UnreadableDocument) as caught:
        read_document(plan)
    assert caught.value.line == 2 and "nesting depth" in caught.value.message
