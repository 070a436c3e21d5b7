"""Values as plan authors write them: durations, sizes, names and free text.

People write `30s`, `512MB`, `requires: api` or `sprint: 2024`; the engine wants float seconds,
int bytes, lists and strings.  The readers here turn one into the other, and the pydantic field
types at the end apply them while a plan part is validated.  `show` quotes a written value back
in a message, so that every message about a value words it the same way.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from engine.resources import normalise_resource

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _number(value: Any) -> float | None:
    """A real number from YAML (bools are not numbers here, although Python says they are)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


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
    return int(number)


# ---------------------------------------------------------------- field types


def _text(value: Any) -> Any:
    """Free text may be written as a bare number (`sprint: 2024`); keep it as text."""
    return str(value) if _number(value) is not None else value


def one_or_many(value: Any) -> Any:
    """`requires: api` means `requires: [api]`; people write the short form."""
    return [value] if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_text)]
Names = Annotated[list[str], BeforeValidator(one_or_many)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
ResourcePath = Annotated[str, AfterValidator(normalise_resource)]
