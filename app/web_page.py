"""What each page of `sprintdeck web` runs: a sprintdeck command (`watch ADDR ...`) that ends with
`web`, and whose refusal the page shows.

textual-serve tells a page's process to quit when the page closes or the server stops normally.  A
`web` that is killed (SIGKILL, a crash) tells it nothing, and Textual's web driver does not quit
when its input closes: the process would stay attached to the manager, a watcher nobody sees, for
as long as the sprint runs.  So, on Linux, it asks to be killed when its parent dies (the page's
shell line execs it, so its parent is `web` itself) before it becomes the command.

A `watch` that is refused before its dashboard starts (the sprint is over, `serve` is gone) would
leave the page on textual-serve's splash for ever: what it said is drawn on the page instead, in
textual-serve's framing (its start line, then a data packet), and the page's terminal shows it.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 137  # as if the signal had come
EXIT_REFUSED = 2  # the watch command's bad input or refusal: its dashboard never started
START_LINE = b"__GANGLION__\n"  # what textual-serve waits for before it reads packets


def main(argv: Sequence[str]) -> int:
    """`python -m app.web_page WEB_PID COMMAND ARGS...`: COMMAND while process WEB_PID lives."""
    parent, command = int(argv[0]), list(argv[1:])
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # web died before the signal was armed
        return EXIT_PARENT_GONE
    from app.cli import main as sprintdeck

    said = _Tee(sys.stderr)
    with contextlib.redirect_stderr(said):
        code = sprintdeck(command)
    if code == EXIT_REFUSED:
        show_on_page(said.getvalue() + "\nReload the page to try again.\n")
    return code


def show_on_page(text: str) -> None:
    """`text` in the page's terminal, in place of a dashboard that never started."""
    data = text.replace("\n", "\r\n").encode()
    sys.stdout.buffer.write(START_LINE + b"D" + len(data).to_bytes(4, "big") + data)
    sys.stdout.buffer.flush()


class _Tee(io.StringIO):
    """Keeps what is written and passes it on (web prints it too)."""

    def __init__(self, passed_to: TextIO) -> None:
        super().__init__()
        self._passed_to = passed_to

    def write(self, text: str) -> int:
        self._passed_to.write(text)
        return super().write(text)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
