"""Pictures of the task graph drawn by Graphviz's `dot` (`sprintdeck export --format svg|png`).

Graphviz lays out a DAG of hundreds of tasks in well under a second and far better than a layout
of our own would; it is a program, not a Python package (Debian's `graphviz`), so it is looked
up on PATH when a picture is asked for, and its absence, failure or hang is an error the caller
reports in a sentence, never a traceback or a wait without end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

PICTURE_FORMATS = ("svg", "png")
DOT_TIMEOUT = 60.0  # seconds; the 600-task sample draws in half a second
INSTALL_HINT = ("install Graphviz, which provides it (Debian/Ubuntu: `sudo apt-get install graphviz`, "
                "Fedora: `sudo dnf install graphviz`, macOS: `brew install graphviz`)")


class GraphvizError(Exception):
    """No picture: the message says why in a sentence."""


class GraphvizMissing(GraphvizError):
    """There is no `dot` on PATH."""


class GraphvizFailed(GraphvizError):
    """`dot` ran but gave no picture: it failed, or it ran past its timeout and was stopped."""


class GraphvizTimedOut(GraphvizFailed):
    """`dot` ran past its timeout and was stopped (thousands of tasks take it tens of seconds)."""


def find_dot() -> str:
    """The `dot` program on PATH."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(f"Graphviz's `dot` program is not on PATH: {INSTALL_HINT}")
    return program


def render(dot_source: str, picture_format: str, timeout: float = DOT_TIMEOUT) -> bytes:
    """`dot -T<format>` of `dot_source`: the picture's bytes. A `dot` that overruns `timeout`
    seconds is killed with everything it started (its own process group), so that the caller
    never waits for ever on a pipe some leftover child still holds."""
    if picture_format not in PICTURE_FORMATS:
        raise ValueError(f"unknown picture format {picture_format!r}")
    command = [find_dot(), f"-T{picture_format}"]
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as error:
        raise GraphvizFailed(f"`{command[0]}` could not be started: {error.strerror}") from None
    try:
        out, err = process.communicate(dot_source.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise GraphvizTimedOut(f"`dot -T{picture_format}` did not finish within {timeout:g} s "
                             "and was stopped") from None
    if process.returncode != 0:
        said = " ".join(err.decode(errors="replace").split())[-500:] or "it printed nothing"
        raise GraphvizFailed(f"`dot -T{picture_format}` failed with exit status {process.returncode}: {said}")
    if not out:
        raise GraphvizFailed(f"`dot -T{picture_format}` exited 0 but wrote no picture")
    return out
