"""The replay dashboard: the live dashboard's widgets over a journal cursor, plus a transport bar.

Replay is read-only: it never runs an agent; operations answer with a notice.  Stepping forward a
little folds the events in between and updates only the rows they touched; any other move (back,
or far) redraws every pane from the cursor's state.

A move that would fold more than `QUICK_SEEK_SNAPSHOTS` snapshot intervals -- a jump far ahead
before the snapshot builder has got there -- never runs on the UI thread: a worker waits for (or
becomes) the builder until the target is covered, folds the last stretch from a snapshot, and posts
the state back; meanwhile the transport bar says "seeking…" and every key still works.  The newest
move wins: a quick move or another far one makes a pending seek's result stale, and it is dropped.

Every pane shows the state at the cursor, Messages included (it shows the stored messages up to
the cursor only).  Playing follows the recorded pace by default (`engine/replay_seek.Pace`), and
`:seek` reads elapsed time as the scrubber shows it (`engine/replay_seek.parse_seek`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import partial

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer
from textual.worker import get_current_worker

from app.dashboard import SprintDeckApp
from app.replay_navigation import ReplayNavigation
from app.screens.help import HelpScreen, replay_keys
from engine.events import Event, MessageRecorded
from engine.journal import JournalError
from engine.models import ProjectState
from engine.replay import ReplayCursor
from engine.replay_seek import (
    Pace,
    SeekSyntaxError,
    elapsed_at,
    parse_seek,
    resolve_seek,
)
from widgets.changes import Changes
from widgets.event_changes import collect
from widgets.scrubber import MARK_LEGEND, Scrubber, TransportState

PLAY_HZ = 15  # play ticks per second
INCREMENTAL_STEP = 200  # a forward step this short updates only what its events touched
MESSAGE_CHUNK = 5_000  # journal events read per tick while filling the Messages pane (~50 ms)
QUICK_SEEK_SNAPSHOTS = 2  # a seek folding at most this many snapshot intervals runs at once (~30 ms)
SEEK_STATUS_HZ = 4  # how often "seeking… indexing N%" is redrawn while a worker prepares a seek
# The live dashboard's operator actions: a recording cannot be changed, so replay hides them.
OPERATIONS = frozenset({"reassign", "retry", "cancel_task", "priority", "pause", "force_release",
                        "resolve_file", "escalate_file"})
STEP = Binding.Group("Step")  # the footer shows "[ ] Step": two keys, one label
SPEED = Binding.Group("Speed")
MARK = Binding.Group("Mark")
REPLAY_COMMANDS = [(":seek N", "go to event N"), (":seek 2:30", "go to that elapsed time (as the scrubber shows it)"),
                   (":seek +30s / -10s", "step forward or back in time"),
                   ("click the scrubber", "go to that point of the recording"),
                   (":marks failures,conflicts", "what n / N jump to: failures, conflicts, deaths, operator (or all)"),
                   (":follow TASK", "n / N move between that task's events (no TASK: the one selected in Tasks)"),
                   (":follow", "while following: stop"),
                   (":fork", "the command that starts a new live sprint from this event (copied)"),
                   ("✗ ! † ◆", f"scrubber marks: {MARK_LEGEND}")]
TRANSPORT_ACTIONS = ("play", "step", "seek_to", "speed", "speed_mode", "next_mark")


class ReplaySource:
    """The dashboard's state source over a cursor: read-only, moved by the transport keys."""

    live = False
    mode = "replay"
    transport = "replay"

    def __init__(self, cursor: ReplayCursor) -> None:
        self.cursor = cursor
        self.journal = str(cursor.path)

    @property
    def state(self) -> ProjectState:
        return self.cursor.state

    @property
    def finished(self) -> bool:
        return self.cursor.position == self.cursor.total and self.state.meta.finished_at is not None

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """A recording does not change; the ReplayApp redraws when the cursor moves."""

    def history(self) -> list[Event]:
        return []

    def how_to_start(self, agent_id: str) -> str | None:
        return None  # a recording's agents are long gone

    async def run(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class ReplayApp(ReplayNavigation, SprintDeckApp):
    # The footer shows the keys used most (they fit in 120 columns); help lists each key with a
    # tooltip, so a transport key added here appears there too.
    BINDINGS = [
        Binding("space", "play", "Play", priority=True, id="replay.play",
                tooltip="play / pause the recording"),
        Binding("left_square_bracket", "step(-1)", "Back", key_display="[", priority=True, id="replay.back",
                tooltip="one event back", group=STEP),
        Binding("right_square_bracket", "step(1)", "Step", key_display="]", priority=True, id="replay.step",
                tooltip="one event forward", group=STEP),
        Binding("left_curly_bracket", "step(-100)", "Back 100", key_display="{", priority=True, show=False,
                id="replay.back100", tooltip="100 events back"),
        Binding("right_curly_bracket", "step(100)", "Step 100", key_display="}", priority=True, show=False,
                id="replay.step100", tooltip="100 events forward"),
        Binding("home", "seek_to(0)", "Start", priority=True, show=False, id="replay.start",
                tooltip="the start: before the first event"),
        Binding("end", "seek_to(-1)", "End", priority=True, show=False, id="replay.end",
                tooltip="the end: the final state"),
        Binding("less_than_sign", "speed(-1)", "Slower", key_display="<", priority=True, id="replay.slower",
                tooltip="play slower", group=SPEED),
        Binding("greater_than_sign", "speed(1)", "Faster", key_display=">", priority=True, id="replay.faster",
                tooltip="play faster", group=SPEED),
        Binding("n", "next_mark(1)", "Next mark", priority=True, id="replay.next_mark", group=MARK,
                tooltip="the next failure, conflict, death or operator action (:marks chooses; :follow TASK: its events)"),
        Binding("N", "next_mark(-1)", "Previous mark", priority=True, id="replay.previous_mark", group=MARK,
                tooltip="the previous one, as n but backwards"),
        # Shown in help and the palette; the footer keeps its room for the transport keys (80 columns).
        Binding("slash", "filter", "Filter", key_display="/", show=False, id="app.filter"),
        Binding("z", "toggle_maximize", "Maximise", show=False, id="app.maximize"),
        Binding("t", "speed_mode", "Real time/ev/s", priority=True, show=False, id="replay.speed_mode",
                tooltip="play at the recorded pace (×1, ×2 …) or in events per second"),
        # The live operator keys, which `check_action` hides in a replay, land here: say why nothing happens.
        Binding("r,R,x,plus,equals_sign,minus,u,a,v,m,e,p", "read_only", show=False, id="replay.read_only"),
    ]

    class SeekReady(Message):
        """A worker has the state at `seq` (for the seek numbered `generation`)."""

        def __init__(self, generation: int, seq: int, state: ProjectState) -> None:
            super().__init__()
            self.generation, self.seq, self.state = generation, seq, state

    class SeekFailed(Message):
        """A worker's seek hit a damaged journal or a digest mismatch."""

        def __init__(self, generation: int, error: JournalError) -> None:
            super().__init__()
            self.generation, self.error = generation, error

    def __init__(self, cursor: ReplayCursor, *, at: int | None = None, **kwargs) -> None:
        self.cursor = cursor
        self.seeking: int | None = None  # the target of a seek a worker is preparing
        self._seek_generation = 0  # bumped by every move: a worker's result for an older one is stale
        self._seek_timer: Timer | None = None
        # Open at the start by default: folding a long journal to its end would hold up first paint.
        # An `at` too far to fold quickly is reached after first paint, by a worker.
        self._deferred_at = at if at is not None and not self._quick(at) else None
        cursor.seek(0 if at is None or self._deferred_at is not None else at)
        self.init_navigation()
        super().__init__(ReplaySource(cursor), clock=self._cursor_time, **kwargs)
        self.pace = Pace()  # ×1 the recorded pace; `t` switches to events per second
        self.playing = False
        # The replay clock while playing in real time (seconds since the first event): it runs
        # between events, so a quiet stretch of the recording plays as quiet.  None: at the cursor.
        self._play_clock: float | None = None
        self._last_tick = 0.0
        self._filled = 0  # journal events scanned into the message store so far
        self._play_timer: Timer | None = None

    def _cursor_time(self) -> datetime:
        position = self.cursor.position
        return self.cursor.time_of(position) if position else self.cursor.start_time

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.scrubber = Scrubber(id="scrubber")
        yield self.scrubber

    def on_mount(self) -> None:
        self.set_interval(1 / 15, self._fill_messages)
        self.refresh_marks()
        self._fit_footer()
        self.call_after_refresh(self.find_marks_later)
        self.show_position()
        # After first paint: snapshots make every later seek cost at most `snapshot_every` events.
        self.call_after_refresh(self.set_timer, 0.5, self._build_snapshots)
        if self._deferred_at is not None:
            self.call_after_refresh(self.seek, self._deferred_at)

    def _apply_width(self, width: int) -> None:
        super()._apply_width(width)
        self._fit_footer()

    def _fit_footer(self) -> None:
        """Below 100 columns the footer is compact and leaves out `^p palette` (help lists it), so
        every transport key fits in 80 columns, a pane's own key (⏎ Details) included."""
        footer = self.query_one(Footer)
        footer.compact = narrow = self.size.width < 100
        footer.show_command_palette = not narrow

    def _build_snapshots(self) -> None:
        self.run_worker(self._build_all, thread=True, group="snapshots")

    def _build_all(self) -> None:
        """The snapshot builder (a thread): stops at its next snapshot once the App cancels it."""
        self.cursor.build_snapshots(stop=get_current_worker().cancelled_event)

    # ------------------------------------------------------------ moving

    @property
    def target(self) -> int:
        """Where the replay is going: a pending seek's target, else the cursor's position.

        Relative moves (steps) start from here, so `end` then `[` means "just before the end".
        """
        return self.cursor.position if self.seeking is None else self.seeking

    def _quick(self, seq: int) -> bool:
        return self.cursor.seek_cost(seq) <= QUICK_SEEK_SNAPSHOTS * self.cursor.snapshot_every

    def seek(self, seq: int) -> None:
        """Go to event `seq` (a user's move: real-time play resumes from that event's time)."""
        self._play_clock = None
        self._go(seq)

    def _go(self, seq: int) -> None:
        """Move to event `seq`: at once when that is quick, else through a worker (the UI stays live)."""
        seq = max(0, min(seq, self.cursor.total))
        if seq == self.seeking:
            return
        if self._quick(seq):
            self._end_seek()
            self._move(seq)
        else:
            self._seek_in_background(seq)

    def _move(self, seq: int) -> None:
        """Seek on the UI thread (cheap: see `_quick`) and redraw what changed."""
        old = self.cursor.position
        if 0 < seq - old <= INCREMENTAL_STEP:
            events = self.cursor.events(old + 1, seq)
            self.cursor.seek(seq)
            changes = collect(events)
        else:
            self.cursor.seek(seq)
            changes = Changes(everything=True)
        self._redraw(changes)

    def _redraw(self, changes: Changes) -> None:
        self.refresh_panes(changes)
        self.metrics.refresh_state(self.source.state, changes, self.clock())  # live: 1 Hz; here: every move
        self.show_position()

    def _seek_in_background(self, seq: int) -> None:
        """Hand a long seek to a worker; a newer one replaces it (the group is exclusive)."""
        self._seek_generation += 1
        self.seeking = seq
        self.run_worker(partial(self._prepare_seek, seq, self._seek_generation),
                        thread=True, group="seek", exclusive=True)
        if self._seek_timer is None:
            self._seek_timer = self.set_interval(1 / SEEK_STATUS_HZ, self.show_position)
        self.show_position()

    def _prepare_seek(self, seq: int, generation: int) -> None:
        """The worker (a thread): let the snapshot builder cover `seq`, then fold the last stretch.

        `build_snapshots(seq)` waits for the running builder to pass `seq` (or builds up to it if
        none runs), so a jump to the end costs no more than the build would anyway, and never
        twice.  The state goes back to the UI thread in a message: the cursor is only moved there.
        """
        worker = get_current_worker()
        try:
            self.cursor.build_snapshots(seq, stop=worker.cancelled_event)
            if worker.is_cancelled:
                return
            state = self.cursor.state_at(seq)
        except JournalError as error:
            self.post_message(self.SeekFailed(generation, error))
            return
        self.post_message(self.SeekReady(generation, seq, state))

    def on_replay_app_seek_ready(self, message: SeekReady) -> None:
        if message.generation != self._seek_generation:
            return  # a newer move came after this one was asked for
        self._end_seek()
        self.cursor.place(message.seq, message.state)
        self._redraw(Changes(everything=True))

    def on_replay_app_seek_failed(self, message: SeekFailed) -> None:
        if message.generation == self._seek_generation:
            self._end_seek()
            self.show_position()
            self.notify(str(message.error), title="seek", severity="error")

    def _end_seek(self) -> None:
        """Forget a pending seek: a later result for it is dropped, its worker cancelled."""
        if self.seeking is None:
            return
        self._seek_generation += 1
        self.seeking = None
        self.workers.cancel_group(self, "seek")
        if self._seek_timer is not None:
            self._seek_timer.stop()
            self._seek_timer = None

    def show_position(self) -> None:
        cursor = self.cursor
        position = cursor.position
        event = cursor.event(position) if position else None
        elapsed = self._play_clock if self._play_clock is not None else elapsed_at(cursor, position)
        what = self.describe_position(_describe(event)) if self.seeking is None else self._seek_status(self.seeking)
        self.scrubber.show(TransportState(position, cursor.total, elapsed, self.pace.label, self.playing, what,
                                          self.navigation_label()))
        self._show_messages()

    def _seek_status(self, target: int) -> str:
        """"seeking to #N… indexing P%": how far the snapshot builder is towards the target."""
        done = min(100, self.cursor.snapshots_until * 100 // max(1, target))
        return f"seeking to #{target}… indexing {done}%"

    def _show_messages(self) -> None:
        """The Messages pane shows the messages up to the cursor (not the whole recording), the
        last of them marked: every pane shows the state at the cursor."""
        shown = self._messages_until(self.cursor.position)
        self.messages.set_limit(shown)
        self.messages.highlight_seq(self.store.seq(shown - 1) if shown else None)

    def _messages_until(self, seq: int) -> int:
        """How many stored messages were journaled at or before event `seq`."""
        store = self.store
        # The store is in seq order: binary search for the first message after seq.
        low, high = 0, len(store)
        while low < high:
            middle = (low + high) // 2
            if store.seq(middle) <= seq:
                low = middle + 1
            else:
                high = middle
        return low

    def _fill_messages(self) -> None:
        """Load the recording's messages into the store a chunk per tick, so first paint is fast."""
        total = self.cursor.total
        if self._filled >= total:
            return
        end = min(total, self._filled + MESSAGE_CHUNK)
        appended = self.ingest_messages(self.cursor.events(self._filled + 1, end))
        self._filled = end
        if appended:
            self._show_messages()

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Transport keys are priority bindings: let them go to the command line while it is open.

        Operations are hidden (from the footer too): their keys fall through to `read_only`."""
        if action in TRANSPORT_ACTIONS and self.command_line.display:
            return False
        return action not in OPERATIONS

    def action_read_only(self) -> None:
        self.notify("This is a recorded sprint: operations are disabled; ? lists the replay keys.",
                    severity="warning")

    def action_help(self) -> None:
        transport = [(b.key_display or b.key, b.tooltip or b.description)
                     for b in ReplayApp.BINDINGS if isinstance(b, Binding) and b.tooltip]
        self.push_screen(HelpScreen(replay_keys(transport, REPLAY_COMMANDS)))

    def action_play(self) -> None:
        self.playing = not self.playing
        if self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None
        if self.playing:
            self._last_tick = time.monotonic()
            self._play_timer = self.set_interval(1 / PLAY_HZ, self._tick)
        self.show_position()

    def _tick(self) -> None:
        now, last = time.monotonic(), self._last_tick
        self._last_tick = now  # before the check below: a seek's wait is not played through
        if self.seeking is not None:
            return  # playing resumes from where the pending seek lands
        cursor = self.cursor
        if cursor.position >= cursor.total:
            self.action_play()  # reached the end: pause
            return
        if not self.pace.realtime:
            self._go(cursor.position + max(1, round(self.pace.rate / PLAY_HZ)))
            return
        if self._play_clock is None:
            self._play_clock = elapsed_at(cursor, cursor.position)
        self._play_clock += (now - last) * self.pace.multiple
        duration = (cursor.end_time - cursor.start_time).total_seconds()
        if self._play_clock >= duration:
            self._play_clock = duration
            target = cursor.total
        else:
            target = cursor.seq_at_time(cursor.start_time + timedelta(seconds=self._play_clock))
        if target > cursor.position:
            self._go(target)
        else:
            self.show_position()  # between two events: only the clock moves

    def action_step(self, n: int) -> None:
        self.seek(self.target + n)

    def action_seek_to(self, seq: int) -> None:
        self.seek(self.cursor.total if seq < 0 else seq)

    def action_speed(self, delta: int) -> None:
        self.pace.change(delta)
        self.show_position()

    def action_speed_mode(self) -> None:
        """Switch between real-time multiples and events per second (each keeps its own setting)."""
        self.pace.realtime = not self.pace.realtime
        self._play_clock = None
        self.show_position()

    def on_scrubber_seek(self, message: Scrubber.Seek) -> None:
        self.seek(message.seq)

    def run_command(self, text: str) -> None:
        """`:seek` an event, an elapsed time or a step in time (engine/replay_seek.py); else as live."""
        words = text.split()
        if words and self.navigation_command(words[0], words[1:]):
            return
        if not words or words[0] != "seek":
            super().run_command(text)
            return
        try:
            request = parse_seek(" ".join(words[1:]))
        except SeekSyntaxError as exc:
            self.notify(str(exc), title="seek", severity="warning")
            return
        landing = resolve_seek(self.cursor, request, self.target)  # a binary search: no fold here
        self.seek(landing.seq)
        if landing.note is not None:
            self.notify(landing.note, title="seek", severity="warning")

    def mode_commands(self) -> Iterable[SystemCommand]:
        """The palette's replay commands, in place of the live operations a recording refuses."""
        yield SystemCommand("Play / pause replay", "Start or stop stepping through the recording (space)",
                            self.action_play)
        yield SystemCommand("Step forward", "One event forward (])", lambda: self.action_step(1))
        yield SystemCommand("Step back", "One event back ([)", lambda: self.action_step(-1))
        yield SystemCommand("Step forward 100", "100 events forward (})", lambda: self.action_step(100))
        yield SystemCommand("Step back 100", "100 events back ({)", lambda: self.action_step(-100))
        yield SystemCommand("Go to the start", "Show the state before the first event (home)",
                            lambda: self.action_seek_to(0))
        yield SystemCommand("Go to the end", "Show the final recorded state (end)", lambda: self.action_seek_to(-1))
        yield SystemCommand("Seek…", "Go to an event or an elapsed time (:seek 42, :seek 2:30, :seek +30s)",
                            lambda: self.command_line.open(":", "seek ", select=False))
        yield SystemCommand("Next mark", "The next failure, conflict, death or operator action (n)",
                            lambda: self.action_next_mark(1))
        yield SystemCommand("Previous mark", "The previous failure, conflict, death or operator action (N)",
                            lambda: self.action_next_mark(-1))
        yield SystemCommand("Marks…", "Choose what n / N jump to (:marks failures,conflicts)",
                            lambda: self.command_line.open(":", "marks ", select=False))
        yield SystemCommand("Follow the selected task", "n / N move between its events (:follow TASK; :follow stops)",
                            lambda: self.navigation_command("follow", []))
        yield SystemCommand("Fork here", "The command that starts a new live sprint from this event (:fork)",
                            lambda: self.navigation_command("fork", []))
        yield SystemCommand("Play faster", "Raise the replay speed (>)", lambda: self.action_speed(1))
        yield SystemCommand("Play slower", "Lower the replay speed (<)", lambda: self.action_speed(-1))


def _describe(event: Event | None) -> str:
    if event is None:
        return "before the first event"
    body = event.body
    if isinstance(body, MessageRecorded):
        message = body.message
        return f"#{event.seq} message {message['type']} {message['from']} → {message['to']}"
    return f"#{event.seq} {event.type} {body.subject}".strip()


def run_replay(cursor: ReplayCursor, *, theme: str | None = None, at: int | None = None) -> int:
    """`sprintdeck replay JOURNAL`: open the replay dashboard; returns the exit code."""
    ReplayApp(cursor, at=at, theme_name=theme).run()
    return 0
