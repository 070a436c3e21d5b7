"""Reading a plan part's values: readers that check one value each, and one loop over a mapping.

A plan is read by these rules alone, without pydantic: `sprintdeck validate` must start like a
small tool (importing pydantic alone cost 3.7x a bare interpreter), and a 100,000-task plan's
parts are lighter as slotted dataclasses than as models.  The rules are pydantic's strict mode,
kept where authors rely on them: `"3"` is not a number, `true` is not an integer, unknown keys
are mistakes, and every problem of a part is reported, not only the first.

A reader takes a value and returns it checked (and converted), or raises `Invalid` with one or
more `Issue`s; a `ValueError` raised by a check is one issue worded by the check itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple


Reader = Callable[[Any], Any]
Where = tuple[str | int, ...]


class Issue(NamedTuple):
    """One problem in a part: where below the part, and either a reason or a key.

    `missing` and `unknown` name the key in `reason`; `unknown` carries the keys that were allowed
    in its mapping, for a suggestion.
    """

    where: Where
    kind: Literal["missing", "unknown", "value"]
    reason: str
    allowed: tuple[str, ...] = ()

    def below(self, *outer: str | int) -> Issue:
        return Issue(outer + self.where, self.kind, self.reason, self.allowed)


class Invalid(Exception):
    """A value that a reader refused, with every issue found in it."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(issue.reason for issue in issues))
        self.issues = issues


def refuse(reason: str) -> Invalid:
    return Invalid([Issue((), "value", reason)])


def expected(what: str, value: Any) -> Invalid:
    """The refusal of a value of the wrong kind, worded for a plan's author."""
    return refuse(f"should be {what}, got {show(value)}")


def attempt(reader: Reader, value: Any) -> tuple[Any, list[Issue]]:
    """(checked value, []) or (None, the issues), whichever way the reader refused."""
    try:
        return reader(value), []
    except Invalid as exc:
        return None, exc.issues
    except ValueError as exc:  # a check's own words
        return None, [Issue((), "value", str(exc))]


# ---------------------------------------------------------------- readers of one value


def show(value: Any) -> str:
    """A short rendering of a YAML value for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."



def string(value: Any) -> str:
    if not isinstance(value, str):
        raise expected("a string", value)
    return value


def non_empty(value: Any) -> str:
    text = string(value)
    if not text:
        raise refuse(f"should not be empty, got {show(value)}")
    return text


def _bound(number: float) -> str:
    """A limit as pydantic wrote it (`1`, not `1.0`), so that messages stay as users know them."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _within(value: Any, low: float | None, high: float | None) -> Any:
    # `not value >= low`, not `value < low`: NaN is outside every range.
    if low is not None and not value >= low:
        raise refuse(f"should be greater than or equal to {_bound(low)}, got {show(value)}")
    if high is not None and not value <= high:
        raise refuse(f"should be less than or equal to {_bound(high)}, got {show(value)}")
    return value


def integer(low: int | None = None, high: int | None = None) -> Reader:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise expected("an integer", value)
        return int(_within(value, low, high))

    return read


def number(low: float | None = None, high: float | None = None) -> Reader:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise expected("a number", value)
        return float(_within(value, low, high))  # bounded first: a huge int is refused, not overflowed

    return read


def choice(options: Iterable[str]) -> Reader:
    """One of a fixed set of words (a `Literal`'s arguments), listed back when it is not."""
    allowed = tuple(options)
    listed = ", ".join(f"'{option}'" for option in allowed[:-1]) + f" or '{allowed[-1]}'"

    def read(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise refuse(f"should be {listed}, got {show(value)}")
        return value

    return read


def optional(reader: Reader) -> Reader:
    """`null` means "not set"."""

    def read(value: Any) -> Any:
        return None if value is None else reader(value)

    return read


def chain(*readers: Reader) -> Reader:
    """The readers in turn, each on the value the one before returned."""

    def read(value: Any) -> Any:
        for reader in readers:
            value = reader(value)
        return value

    return read


def list_of(item: Reader) -> Reader:
    """A list, every item read by `item`; every bad item is reported, each at its index."""

    def read(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise expected("a list", value)
        items: list[Any] = []
        issues: list[Issue] = []
        for index, element in enumerate(value):
            checked, problems = attempt(item, element)
            items.append(checked)
            issues.extend(problem.below(index) for problem in problems)
        if issues:
            raise Invalid(issues)
        return items

    return read


def mapping(part: Part) -> Reader:
    """A nested part (a task's `resources` entries)."""

    def read(value: Any) -> Any:
        built, issues = part.read(value)
        if issues:
            raise Invalid(issues)
        return built

    return read


# ---------------------------------------------------------------- a part: a mapping of readers


class Part:
    """How to read one kind of plan part into `build(**values)`.

    `required` keys must be written; keys left out keep `build`'s defaults (and are not checked,
    as a default is right by construction).  `prepare` sets, before building, values that depend
    on which keys were written.  `finish` checks the built part as a whole, once every key has
    read well; its ValueError is an issue of the part itself (an `Invalid` says where).
    """

    def __init__(self, build: Callable[..., Any], readers: Mapping[str, Reader], *, required: frozenset[str] = frozenset(),
                 prepare: Callable[[dict[str, Any], Mapping[str, Any]], None] | None = None,
                 finish: Callable[[Any, Mapping[str, Any]], None] | None = None) -> None:
        self.build = build
        self.readers = readers
        self.required = required
        self.prepare = prepare
        self.finish = finish

    def read(self, value: Any, *, whole: bool = True) -> tuple[Any, list[Issue]]:
        """(the part, []) or (None, every issue in it): field issues first, then unknown keys.

        Not `whole`: only the keys it knows are read, and `prepare`/`finish` are skipped."""
        if not isinstance(value, dict):
            return None, expected("a mapping", value).issues
        values: dict[str, Any] = {}
        issues: list[Issue] = []
        for name, reader in self.readers.items():
            if name in value:
                checked, problems = attempt(reader, value[name])
                values[name] = checked
                issues.extend(problem.below(name) for problem in problems)
            elif name in self.required:
                issues.append(Issue((name,), "missing", name))
        if whole:
            allowed = tuple(self.readers)
            issues.extend(Issue((key,), "unknown", str(key), allowed) for key in value if key not in self.readers)
        if issues:
            return None, issues
        if whole and self.prepare is not None:
            self.prepare(values, value)
        built = self.build(**values)
        if whole and self.finish is not None:
            try:
                self.finish(built, value)
            except Invalid as exc:
                return None, exc.issues
            except ValueError as exc:
                return None, [Issue((), "value", str(exc))]
        return built, []

    def read_quietly(self, value: Any) -> Any:
        """The part read from the keys it knows, others ignored; None if even those are bad."""
        built, issues = self.read(value, whole=False)
        return None if issues else built
