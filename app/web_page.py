"""What each page of `sprintdeck web` runs: a sprintdeck command (`watch ADDR ...`) that ends with `web`.

textual-serve tells a page's process to quit when the page closes or the server stops normally.  A
`web` that is killed (SIGKILL, a crash) tells it nothing, and Textual's web driver does not quit
when its input closes: the process would stay attached to the manager, a watcher nobody sees, for
as long as the sprint runs.  So, on Linux, it asks to be killed when its parent dies (the page's
shell line execs it, so its parent is `web` itself) before it becomes the command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 137  # as if the signal had come


def main(argv: Sequence[str]) -> int:
    """`python -m app.web_page WEB_PID COMMAND ARGS...`: COMMAND while process WEB_PID lives."""
    parent, command = int(argv[0]), list(argv[1:])
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # web died before the signal was armed
        return EXIT_PARENT_GONE
    from app.cli import main as sprintdeck

    return sprintdeck(command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
