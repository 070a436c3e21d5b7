"""What an id may contain, and how an untrusted one is quoted back in a message.

Ids - the sprint's name, task, agent and capability ids, resource ids - are written by plan
authors and sent by agents over sockets, and they end up in terminals, the dashboard, journal
records and file names.  So characters that act rather than show are refused where an id enters:
an ANSI escape recolours or rewrites the operator's terminal, a newline forges a log line and
makes `'a.txt\\n'` a second lock on `a.txt`, a bidirectional override shows one name and means
another.  Length is bounded too: a 100,000-character id is nobody's name for anything.  A message
about a refused id quotes it escaped (`repr`) and cut short, so the message is safe to print.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 200  # task, agent, capability and sprint ids
SHOWN_LENGTH = 60  # characters of an id a message quotes before cutting it short

# C0 and C1 controls and DEL; Unicode line and paragraph separators; the bidirectional marks,
# embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def shown(text: str, limit: int = SHOWN_LENGTH) -> str:
    """`text` quoted with its control characters escaped, cut in the middle past `limit` characters.

    An ordinary id reads as `'build'`, exactly as the messages that quote ids always wrote it.
    """
    if len(text) <= limit:
        return repr(text)
    head, tail = text[: limit * 2 // 3], text[-(limit // 3):]
    return f"{head!r}...{tail!r} ({len(text):,} characters)"


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that acts rather than shows, escaped (`'\\x1b'`), or None."""
    found = _UNSAFE.search(text)
    return None if found is None else repr(found.group())


def text_problem(text: str, *, max_length: int) -> str | None:
    """Why `text` cannot be an id (a control character, or too long), or None when it can."""
    bad = unsafe_character(text)
    if bad is not None:
        return f"contains the control character {bad}"
    if len(text) > max_length:
        return f"is too long (at most {max_length:,} characters)"
    return None


def id_problem(text: str) -> str | None:
    """Why `text` cannot be a task id or sprint name, or None.

    These become parts of file names (journals, scratch folders, a simulated agent's notes), so
    besides control characters and length they may not hold a path separator or be `.`/`..`.
    """
    problem = text_problem(text, max_length=MAX_ID_LENGTH)
    if problem is not None:
        return problem
    if "/" in text or "\\" in text:
        return "contains a path separator ('/' or '\\'); ids become parts of file names"
    if text.strip() in (".", ".."):
        return "is not a name ('.' and '..' are directories)"
    return None
