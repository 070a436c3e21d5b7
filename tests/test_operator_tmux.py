"""The operator's first look, in a real terminal: `sprintdeck run` inside tmux, no key pressed.

The sample sprint `blocked` leaves `migrate` waiting for the lock on server/db that
`update_schema` holds (a slow command) and fails `npm_test` for good.  The main screen, as tmux
draws it at 120x40, must say both: who holds the lock the blocked task waits for, and the failed
task's error.  This is what a newcomer could not find without three keys (issue 15).

tmux runs on a private socket (`-L`), so the test never touches the user's own tmux server, and the
fixture's finaliser kills that server whatever happens.  CI installs tmux (.ci/run).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES

PLAN = SAMPLES / "blocked" / "plan.yaml"
WIDTH, HEIGHT = 120, 40
BLOCKED = "lock server/db ← update_schema"
FAILED = "#1 failed: exit 1: npm test: 3 failing"


@dataclass
class Tmux:
    socket: str
    session: str
    config: Path  # the server's only configuration (the user's ~/.tmux.conf is not read)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ["tmux", "-u", "-f", str(self.config), "-L", self.socket, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=10)

    def capture(self) -> str:
        """The visible screen as text (no escapes): what the operator sees."""
        return self.run("capture-pane", "-p", "-t", self.session).stdout

    def running(self) -> bool:
        return self.run("has-session", "-t", self.session).returncode == 0


@pytest.fixture
def sprint_in_tmux(tmp_path: Path) -> Iterator[Tmux]:
    """`sprintdeck run PLAN --speed 1` in a detached tmux session of a fixed size."""
    assert shutil.which("tmux"), "tmux is not installed (.ci/run installs it)"
    sprintdeck = Path(sys.executable).parent / "sprintdeck"
    env = {
        "PYTHONPATH": str(ROOT),  # this checkout's code, whichever the virtual environment points at
        "SPRINTDECK_HOLD_SECONDS": "120",  # update_schema holds the lock for the whole test
        "LANG": "C.UTF-8",
        "TERM": "tmux-256color",
    }
    command = " ".join([
        # The size is the terminal's: COLUMNS and LINES, which a test process may carry (80x24
        # here), would override it.
        "env", "-u", "COLUMNS", "-u", "LINES", *(f"{key}={shlex.quote(value)}" for key, value in env.items()),
        shlex.quote(str(sprintdeck)), "run", shlex.quote(str(PLAN)), "--speed", "1",
        "--record", shlex.quote(str(tmp_path / "journal.jsonl")), "--workspace", shlex.quote(str(tmp_path / "ws")),
    ])  # stderr stays on the terminal: Textual draws the screen there
    shutil.copytree(PLAN.parent / "workspace", tmp_path / "ws")
    # The size from the first moment: a window made 80x24 and resized after the program started
    # raced its reading of the terminal size.
    config = tmp_path / "tmux.conf"
    config.write_text(f"set -g default-size {WIDTH}x{HEIGHT}\nset -g status off\n")
    tmux = Tmux(socket=f"sprintdeck-test-{uuid.uuid4().hex[:8]}", session="operator", config=config)
    started = tmux.run("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", tmux.session,
                       "-c", str(tmp_path), command)
    assert started.returncode == 0, started.stderr
    try:
        yield tmux
    finally:
        _quit(tmux)
        tmux.run("kill-server")


def _quit(tmux: Tmux) -> None:
    """Leave as an operator would (`q`, then `y` to stop the running sprint), so the sprint stops
    its agents' commands; the finaliser kills the tmux server afterwards in any case."""
    if not tmux.running():
        return
    tmux.run("send-keys", "-t", tmux.session, "q")
    time.sleep(0.5)
    tmux.run("send-keys", "-t", tmux.session, "y")
    deadline = time.monotonic() + 10
    while tmux.running() and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_for_screen(tmux: Tmux, *needles: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux.capture()
        if all(needle in screen for needle in needles):
            return screen
        if not tmux.running():
            break
        time.sleep(0.5)
    missing = [needle for needle in needles if needle not in screen]
    raise AssertionError(f"the main screen never showed {missing}; it showed:\n{screen}")


def test_the_main_screen_shows_the_lock_holder_and_the_error_without_a_key(sprint_in_tmux: Tmux) -> None:
    screen = wait_for_screen(sprint_in_tmux, BLOCKED, FAILED)
    lines = screen.splitlines()
    assert len(lines) == HEIGHT and max(len(line) for line in lines) <= WIDTH
    blocked_row = next(line for line in lines if " migrate " in line and BLOCKED in line)
    assert "blocked" in blocked_row  # the status in words beside the reason, not only a colour
    failed_row = next(line for line in lines if " npm_test " in line)
    assert "failed" in failed_row and FAILED in failed_row
    # The Agents pane says the waiting agent is blocked, and on whom.
    assert any("blocked" in line and "migrator" in line and "migrate ← update_schema" in line for line in lines), screen
