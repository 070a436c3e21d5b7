"""Replay that navigates by what matters: `n`/`N`, `:marks`, `:follow` and `:fork` (a ReplayApp mixin).

`n` / `N` go to the next / previous notable event (engine/replay_marks.py: a failure, a conflict,
an agent's death, an operator's action) among the kinds `:marks` chose (all by default), or, while
`:follow TASK` is on, to the next / previous event of that task.  Where they landed is said in
words, on the transport bar's third line and in a notice ("event 412 · task_failed build_ui: exit
1"); so is the absence of a further one, and nothing moves then.  The transport bar's second line
always says what `n` jumps to, so the filter is never hidden state.

`:fork` gives the command that starts a new live sprint from the cursor's event (engine/fork.py):
shown in a notice, copied to the clipboard, and kept on the third line to be read off.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from functools import partial
from pathlib import Path

from engine.events import Event
from engine.replay import ReplayCursor
from engine.replay_marks import KINDS, Mark, find_marks, next_mark, parse_kinds, summary, task_events

# Up to this size (about 50,000 events) the marks are found before first paint (~50 ms); a larger
# journal's are found by a worker after it (a million events: ~0.9 s, benchmarks/BENCHMARKS.md).
MARKS_AT_ONCE_BYTES = 16 << 20
KIND_WORDS = {"failures": "failure", "conflicts": "conflict", "deaths": "death", "operator": "operator action"}


class ReplayNavigation:
    """The navigation state of a ReplayApp and its actions; the app supplies the rest."""

    cursor: ReplayCursor

    def init_navigation(self) -> None:
        self.large = self.cursor.path.stat().st_size > MARKS_AT_ONCE_BYTES
        self.finding_marks = self.large
        self.marks: list[Mark] = [] if self.large else find_marks(self.cursor.path, self.cursor.total)
        self.mark_kinds: frozenset[str] = frozenset(KINDS)
        self.following: str | None = None
        self.follow_events: list[Mark] = []
        self.fork_command: str | None = None
        self._note: tuple[int, str] | None = None  # (position, sentence): shown until the cursor moves

    def find_marks_later(self) -> None:
        """After first paint, for a large journal: a worker finds the marks and hands them back."""
        if self.finding_marks:
            self._scan(partial(find_marks, self.cursor.path, self.cursor.total), self._marks_found)

    def _scan(self, scan: Callable[[], list[Mark]], done: Callable[[list[Mark]], None]) -> None:
        """Scan the journal: at once when it is small, else in a worker (the UI stays live meanwhile)."""
        if not self.large:
            done(scan())
            return

        def in_worker() -> None:
            self.call_from_thread(done, scan())  # type: ignore[attr-defined]

        self.run_worker(in_worker, thread=True, group="scan")  # type: ignore[attr-defined]

    def _marks_found(self, marks: list[Mark]) -> None:
        self.marks, self.finding_marks = marks, False
        self.refresh_marks()
        self.show_position()  # type: ignore[attr-defined]

    def text_of(self, mark: Mark) -> str:
        """What a mark's event says (read from the journal when `task_events` left it unsaid)."""
        return mark.text if mark.text is not None else summary(_record(self.cursor.event(mark.seq)))

    # ------------------------------------------------------------ what the transport bar says

    @property
    def shown_marks(self) -> list[Mark]:
        """The marks `n` / `N` move between, and the scrubber draws."""
        if self.following is not None:
            return self.follow_events
        return [mark for mark in self.marks if mark.kind in self.mark_kinds]

    def navigation_label(self) -> str:
        """`n: failures, conflicts (4)` or `n: following build_ui 3/12` (events up to the cursor / all)."""
        if self.following is not None:
            done = sum(1 for mark in self.follow_events if mark.seq <= self.cursor.position)
            return f"n: following {self.following} {done}/{len(self.follow_events)}"
        if self.finding_marks:
            return "n: finding marks…"
        kinds = "all marks" if self.mark_kinds == frozenset(KINDS) else ", ".join(
            kind for kind in KINDS if kind in self.mark_kinds)
        return f"n: {kinds} ({len(self.shown_marks)})"

    def describe_position(self, fallback: str) -> str:
        """The third line: a note for this position (a landing, a fork command), else `fallback`."""
        position = self.cursor.position
        if self._note is not None and self._note[0] == position:
            return self._note[1]
        mark = next((m for m in self.marks if m.seq == position), None) if position else None
        return f"event {position} · {self.text_of(mark)}" if mark is not None else fallback

    def say(self, sentence: str, *, severity: str = "information", title: str = "replay") -> None:
        """Say it in a notice and on the transport bar until the cursor moves."""
        self._note = (self.navigation_target(), sentence)
        self.tell(sentence, title, severity)

    def tell(self, sentence: str, title: str, severity: str = "information") -> None:
        """A notice (the app's `notify`: this mixin's one way to speak)."""
        self.notify(sentence, title=title, severity=severity)  # type: ignore[attr-defined]

    def navigation_target(self) -> int:
        return int(self.target)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ n / N

    def action_next_mark(self, direction: int) -> None:
        """`n` (direction 1) / `N` (-1): go to the next / previous mark, or say there is none."""
        origin = self.navigation_target()
        if self.finding_marks and self.following is None:
            self.say("still finding the marks of this large recording: n works in a moment", severity="warning")
            return
        mark = next_mark(self.shown_marks, origin, direction)
        if mark is None:
            where = "after" if direction > 0 else "before"
            self.say(f"no {self._looking_for()} {where} event {origin}", severity="warning")
            self.show_position()  # type: ignore[attr-defined]
            return
        self.seek(mark.seq)  # type: ignore[attr-defined]
        self.say(f"event {mark.seq} · {self.text_of(mark)}")
        self.show_position()  # type: ignore[attr-defined]

    def _looking_for(self) -> str:
        if self.following is not None:
            return f"event of {self.following}"
        words = [KIND_WORDS[kind] for kind in KINDS if kind in self.mark_kinds]
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"

    # ------------------------------------------------------------ commands

    def navigation_command(self, name: str, args: list[str]) -> bool:
        """`:marks`, `:follow` and `:fork`; False for any other command."""
        handlers = {"marks": self.command_marks, "follow": self.command_follow, "fork": self.command_fork}
        if name not in handlers:
            return False
        handlers[name](args)
        self.show_position()  # type: ignore[attr-defined]
        return True

    def command_marks(self, args: list[str]) -> None:
        """`:marks failures,conflicts` chooses what `n` jumps to; `:marks` or `:marks all`: every kind."""
        try:
            self.mark_kinds = parse_kinds(" ".join(args))
        except ValueError as exc:
            self.tell(str(exc), "marks", "warning")
            return
        self.following, self.follow_events = None, []
        self.refresh_marks()
        self.tell(self.navigation_label(), "marks")

    def command_follow(self, args: list[str]) -> None:
        """`:follow TASK`: `n`/`N` move between that task's events; `:follow` alone stops (or, when
        not following, follows the task under the cursor in Tasks)."""
        if not args and self.following is not None:
            stopped, self.following, self.follow_events = self.following, None, []
            self.refresh_marks()
            self.tell(f"stopped following {stopped}; {self.navigation_label()}", "follow")
            return
        task_id = args[0] if args else self.tasks.selected_key()  # type: ignore[attr-defined]
        if task_id is None:
            self.tell(":follow TASK names a task (or select one in Tasks)", "follow", "warning")
            return
        if self.large:
            self.tell(f"finding the events of {task_id}…", "follow")
        self._scan(partial(task_events, self.cursor.path, self.cursor.total, task_id),
                   partial(self._follow_found, task_id))

    def _follow_found(self, task_id: str, events: list[Mark]) -> None:
        if not events:
            self.tell(f"no event of a task {task_id!r} in this recording", "follow", "warning")
            return
        self.following, self.follow_events = task_id, events
        self.refresh_marks()
        self.show_position()  # type: ignore[attr-defined]
        self.tell(f"following {task_id}: {len(events)} events; n / N move between them, :follow alone stops",
                  "follow")

    def command_fork(self, args: list[str]) -> None:
        """`:fork`: the command that forks this recording at the cursor's event (engine/fork.py)."""
        seq = self.cursor.position
        if seq < 1:
            self.tell("the cursor is before the first event: step forward to fork", "fork", "warning")
            return
        self.fork_command = fork_command(self.cursor.path, self.cursor.header, seq)
        self.copy_to_clipboard(self.fork_command)  # type: ignore[attr-defined]
        self.say(f"fork here: {self.fork_command}", title="fork (copied)")

    def refresh_marks(self) -> None:
        self.scrubber.set_marks(self.shown_marks, self.cursor.total)  # type: ignore[attr-defined]


def fork_command(journal: Path, header: dict[str, object], seq: int) -> str:
    """`sprintdeck run PLAN --resume JOURNAL --at SEQ --record NEW`, NEW beside JOURNAL."""
    plan = str(header.get("plan") or "PLAN")
    new = journal.with_name(f"{journal.stem}.fork-{seq}{journal.suffix or '.jsonl'}")
    words = ["sprintdeck", "run", plan, "--resume", str(journal), "--at", str(seq), "--record", str(new)]
    return shlex.join(words)


def _record(event: Event) -> dict[str, object]:
    """An event as the journal record `summary` reads (its type and data)."""
    return {"type": str(event.type), "data": event.body.wire()}
