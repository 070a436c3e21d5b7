"""What is wrong with a plan, and where: `Problem`, `PlanError` and the report that collects them.

Loading never stops at the first mistake: every check writes into one `Report`, which turns a
path in the document (`("tasks", 3, "agent")`) into the line the author should look at, and
`load_plan` raises everything found in one `PlanError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, NamedTuple

from engine.identifiers import shown
from engine.marked_yaml import line_at


class Problem(NamedTuple):
    """One mistake: the file as the user named it, the line to look at, and what is wrong."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class PlanError(Exception):
    """Every problem found in one plan, so the author can fix them in one pass."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


class Report:
    """Collects problems for one file; `who` names the agent/task a message is about."""

    def __init__(self, file: str, root: Any = None) -> None:
        self.file = file
        self.root = root  # the parsed document, for `at`
        self.problems: list[Problem] = []

    def add(self, line: int, message: str, who: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, f"{who}: {message}" if who else message))

    def at(self, loc: Sequence[Any], message: str, who: str | None = None) -> None:
        """A problem at the line of `loc`, a path of keys and indexes into the document."""
        self.add(line_at(self.root, loc), message, who)


def suggest(word: Any, choices: Sequence[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {shown(close[0])}?)" if close else ""
