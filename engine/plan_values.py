"""Values as plan authors write them: durations, sizes, names and free text.

People write `30s`, `512MB`, `requires: api` or `sprint: 2024`; the engine wants float seconds,
int bytes, lists and strings.  The readers here turn one into the other, and the pydantic field
types at the end apply them while a plan part is validated.  `show` quotes a written value back
in a message, so that every message about a value words it the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from engine.identifiers import MAX_ID_LENGTH, id_problem, shown, text_problem
from engine.plan_schema import Reader, chain, list_of, non_empty, show, string
from engine.resources import normalise_resource

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# Bounds that keep a plan's numbers meaning something to the engine: past 30 days a timer or an
# estimate is a typo (`estimate: 1e308` left a simulated sprint asleep for good), and a memory limit
# past a petabyte is no limit at all (and overflows RLIMIT_AS).
MAX_DURATION = 30 * 24 * 3600.0
MAX_SIZE = 1024**5


def _number(value: Any) -> float | None:
    """A real number from YAML (bools are not numbers here, although Python says they are).

    An integer too large for a float is infinite here, so that it is refused as too large rather
    than raising OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# ---------------------------------------------------------------- durations and sizes


def parse_duration(value: Any) -> float:
    """Seconds from `500ms`, `30s`, `2m`, `1h`, `1m30s`, or a plain number of seconds.

    Plans state times the way people say them; the engine wants one unit (float seconds).
    """
    seconds = _number(value)
    if seconds is None and isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if parts and _DURATION_PART.sub("", text).strip() == "":
                seconds = sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"invalid duration {show(value)} (use 500ms, 30s, 2m, 1h or a number of seconds)"
        )
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {show(value)} is too long (at most {format_duration(MAX_DURATION)}, 30 days)")
    return seconds


def format_duration(seconds: float) -> str:
    """The short form of a duration (`500ms`, `30s`, `2m30s`), for labels and messages."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{rest}s" if rest else "")


def parse_size(value: Any) -> int:
    """Bytes from `512MB`, `1GB`, `100KB` (binary multiples, as memory limits are) or an int."""
    number = _number(value)
    if number is None and isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            unit = match.group(2) or ""
            number = float(match.group(1)) * _SIZE_UNITS[unit[:1].lower()]
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(f"invalid size {show(value)} (use 512MB, 1GB, 100KB or a number of bytes)")
    if number > MAX_SIZE:
        raise ValueError(f"size {show(value)} is too large (at most 1024TB)")
    return int(number)


# ---------------------------------------------------------------- field types


def _text(value: Any) -> Any:
    """Free text may be written as a bare number (`sprint: 2024`); keep it as text."""
    return str(value) if _number(value) is not None else value


def one_or_many(value: Any) -> Any:
    """`requires: api` means `requires: [api]`; people write the short form."""
    return [value] if isinstance(value, str) else value


def _refusing(problem_of: Callable[[str], str | None]) -> Callable[[str], str]:
    """A validator that refuses a string `problem_of` finds fault with (engine/identifiers.py),
    quoting it escaped and cut short: the message must not act in the terminal either."""

    def check(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(f"{shown(value)} {problem}")
        return value

    return check


def _limit(value: float) -> float:
    """A limit of 0 would fail every task at once; leaving the key out means no limit."""
    if value <= 0:
        raise ValueError("must be more than 0 (leave it out for no limit)")
    return value


_name = _refusing(partial(text_problem, max_length=MAX_ID_LENGTH))  # capabilities, tools
_id = _refusing(id_problem)  # task ids and the sprint's name: parts of file names, too
_one_line = _refusing(partial(text_problem, max_length=1000))  # titles

Text: Reader = chain(_text, string)
Title: Reader = chain(_text, string, _one_line)
Names: Reader = chain(one_or_many, list_of(chain(string, _name)))
Id: Reader = chain(string, non_empty, _id)
SprintName: Reader = chain(_text, string, _id)
Duration: Reader = parse_duration
Size: Reader = parse_size
TimeLimit: Reader = chain(parse_duration, _limit)
SizeLimit: Reader = chain(parse_size, _limit)
ResourcePath: Reader = chain(string, normalise_resource)
