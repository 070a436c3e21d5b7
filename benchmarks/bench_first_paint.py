"""Dashboard first paint in a real terminal: `sprintdeck run sample_sprints/webrtc/plan.yaml` in tmux,
next to an empty Textual app with one titled pane, measured side by side (issue 16).

Each run starts a fresh tmux session (120x40) with the command and polls `capture-pane` until the
screen shows what first paint means for it: the dashboard's Tasks pane with a task of the plan in
it, or the empty app's pane title.  The two commands alternate, after one untimed round of each
(bytecode written, even where PYTHONDONTWRITEBYTECODE is set, as an installed package has it);
medians are printed with their ratio (target: the dashboard <= 2x the empty app).  Needs tmux.

    .venv/bin/python benchmarks/bench_first_paint.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMPTY_APP = """
from textual.app import App
from textual.widgets import Static

class Empty(App):
    CSS = "Static { border: round $primary; border-title-align: left; height: 1fr; }"

    def compose(self):
        pane = Static("")
        pane.border_title = "Tasks"
        yield pane

Empty().run()
"""


def first_paint(socket: str, command: str, painted: str) -> float:
    """Seconds from starting `command` in a new tmux session to `painted` on its screen."""
    session = "paint"
    started = time.perf_counter()
    subprocess.run(["tmux", "-S", socket, "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    f"env -u COLUMNS -u LINES -u PYTHONDONTWRITEBYTECODE sh -c {shlex.quote(command)}"], check=True)
    try:
        while True:
            screen = subprocess.run(["tmux", "-S", socket, "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            if painted in screen:
                return time.perf_counter() - started
            if time.perf_counter() - started > 60:
                raise SystemExit(f"never painted {painted!r}:\n{screen}")
            time.sleep(0.005)
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)


def main(args: argparse.Namespace) -> None:
    python = shlex.quote(sys.executable)
    with tempfile.TemporaryDirectory(prefix="bench-paint-") as tmp:
        empty = Path(tmp) / "empty.py"
        empty.write_text(EMPTY_APP)
        times: dict[str, list[float]] = {"empty Textual app, one titled pane": [], "sprintdeck run (webrtc)": []}
        for index in range(-1, args.runs):  # run -1 is a warm-up: bytecode written, files cached
            empty_paint = first_paint(str(Path(tmp) / f"tmux-empty-{index}"), f"{python} {empty}", "Tasks")
            run = (f"cd {shlex.quote(str(ROOT))} && PYTHONPATH={shlex.quote(str(ROOT))} {python} -m app.cli run "
                   f"sample_sprints/webrtc/plan.yaml --record {tmp}/run-{index}.jsonl --workspace {tmp}/ws-{index}")
            run_paint = first_paint(str(Path(tmp) / f"tmux-run-{index}"), run, "implement_api")
            if index >= 0:
                times["empty Textual app, one titled pane"].append(empty_paint)
                times["sprintdeck run (webrtc)"].append(run_paint)
    floor = statistics.median(times["empty Textual app, one titled pane"])
    print(f"{args.runs} runs each, alternating, 120x40 tmux; medians\n")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:36} {median * 1000:7.0f} ms  {median / floor:5.2f}x")
    print("\ntarget: the dashboard <= 2x the empty app")


if __name__ == "__main__":
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    main(parser.parse_args())
