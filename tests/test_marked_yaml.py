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


TRICKY = [
    "a: &x {k: 1, j: [1, 2]}\nb: *x\nc: {<<: *x, k: 2}\n",
    "base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\nm:\n  <<: [*b, *o]\n  d: 5\n",
    "m:\n  <<: *nope\n",
    "m:\n  <<: 3\n",
    "m:\n  <<: [1]\n",
    "a: &x 1\nb: &x 2\n",
    "a: !!str 12\nb: !!int '7'\nc: 2024-01-02\nd: 0x1f\ne: .inf\nf: ~\ng: 'yes'\nh: yes\n",
    "? [1, 2]\n: x\n",
    "--- 1\n--- 2\n",
    "",
    "# only a comment\n",
    "just a scalar\n",
    "a: !custom 1\n",
    "=: v\n",
    "a: <<\n",
    "a:\n  - b\n  - c: d\n    e: [f, {g: h}]\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_yaml_corners_read_as_pyyaml_reads_them(tmp_path: Path, text: str) -> None:
    # Anchors, aliases, merges, tags, complex keys, several documents: the same values or the
    # same refusal as PyYAML's own loader (the reader builds values from events, not nodes).
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    try:
        expected = yaml.load(text, Loader=Reference)
    except yaml.YAMLError:
        with pytest.raises(UnreadableDocument) as caught:
            read_document(plan)
        assert caught.value.message.startswith("YAML syntax error")
        return
    document, _, _ = read_document(plan)
    assert document == expected


def test_keys_written_twice_are_named_with_both_lines(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n  y: 3\n  y: 4\n")  # x overrides a merge: fine
    document, _, duplicates = read_document(plan)
    assert document["m"] == {"x": 2, "y": 4}
    assert duplicates == [(6, "duplicate key 'y' (first on line 5): only one of the two would be kept")]


def test_an_alias_inside_its_own_anchor_is_the_value_itself(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("- &s [1, *s]\n")
    document, _, _ = read_document(plan)
    assert document[0][1] is document[0]
