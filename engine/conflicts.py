"""Attribution of file changes, conflicts, and their resolution (DESIGN §7).

The watcher says *what* changed; `FileGuard` decides *whose* change it was, from the locks held at
that moment, and records the decision as an event (so the journal replays it).  The rules:

* a change to a path under exactly one agent's write/exclusive lock is `modified` by that agent,
  unless the holder has reported (a fenced `state_update`) a checksum the content does not match;
* a change under no such lock, or under read locks only, or not matching the holder's report, is a
  `conflict` naming every lock that bore on the path then;
* a change to a *contested* path (engine/superseded.py) is a conflict naming the superseded lock.

Lock hand-overs race with notifications (an agent writes, completes, and its lock is released
before the notice arrives), so the lock desk has the guard *settle* the paths of a lock just before
it is granted or released: the stat cache is checked there and then, and a change is judged
against the holders of that moment.  The notice that arrives later finds nothing new.

While a path is under a lock its content is kept (`engine/kept_content.py`): that is what revert
restores and what a three-way merge (base, last good, current) works from.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from engine.events import (
    ConflictRecord,
    FileChanged,
    FileDeleted,
    FileReported,
    FilesScanned,
    FileUnreadable,
    HolderRecord,
    ScannedFile,
    UnreadableFile,
    iso_from_ns,
)
from engine.kept_content import ABSENT, KEEP_PER_GRANT, ContentStore, Kept, KeptContent
from engine.lock_records import Grant
from engine.models import FileState
from engine.recorder import Recorder
from engine.resolutions import ResolutionError, Resolutions, unified_diff_of
from engine.resources import LockError, is_named
from engine.superseded import ContestedPaths
from engine.file_index import FileIndex, Observation, checksum_with, pair_renames
from engine.watch import Watcher

log = logging.getLogger(__name__)

REPORT_GRACE = 0.25  # seconds a change may wait for its holder's state_update before it is a conflict
#: Seconds a new file nobody holds may live before it is a conflict: an atomic save (Claude Code's
#: Write, most editors) writes a temporary name and renames it onto the locked path within it.
CREATION_GRACE = 0.25
Covering = Callable[[str], list[Grant]]  # the grants covering a path, from the lock manager


@dataclass(frozen=True)
class Report:
    """A holder's fenced claim: "the content of `path` is now `checksum`"."""

    agent_id: str
    checksum: str
    lock_id: str | None
    token: int | None


@dataclass(frozen=True)
class Verdict:
    """Whose change it was, or why it was nobody's."""

    owner: str | None
    holders: list[HolderRecord]
    reason: str | None = None
    detail: str = ""


_Deferred = tuple[Observation, Verdict, ConflictRecord | None]


class FileGuard:
    """The manager's file side: the watcher, attribution, kept content and resolutions."""

    def __init__(self, workspace: Path, recorder: Recorder, covering: Covering, journal_path: Path | None) -> None:
        self.workspace = workspace
        self._recorder = recorder
        self._state = recorder.state
        self._emit = recorder.emit
        self._covering = covering
        self._journal_path = journal_path
        self.index: FileIndex | None = None
        self.watcher: Watcher | None = None
        self._kept: KeptContent | None = None
        self._resolutions: Resolutions | None = None
        self.reports: dict[str, Report] = {}
        self._deferred: dict[str, tuple[asyncio.TimerHandle, _Deferred]] = {}
        self._released: set[str] = set()  # resource ids released since the last `after_release`
        self.contested = ContestedPaths()

    @property
    def running(self) -> bool:
        return self.index is not None

    @property
    def kept(self) -> dict[str, Kept]:
        """Kept content by path (read-only: the guard changes it)."""
        return self._kept.by_path if self._kept is not None else {}

    @property
    def store(self) -> ContentStore | None:
        return self._kept.store if self._kept is not None else None

    def _parts(self) -> tuple[FileIndex, KeptContent]:
        if self.index is None or self._kept is None:
            raise ResolutionError("the file watcher is not running")
        return self.index, self._kept

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Arm the OS watch, then scan (so nothing between the two is missed) and journal the scan.

        After `recover` the index already holds the workspace as the journal knew it, so the scan
        only finds what changed since, and that is judged like any other change.
        """
        recovered = self.running
        if not recovered and not self._open_index():
            return
        index, _ = self._parts()
        self.watcher = Watcher(index, self.on_changes)
        await self.watcher.start()
        observations = await asyncio.to_thread(index.scan)
        if recovered:
            if observations:
                self.on_changes(pair_renames(observations))
            return
        files: list[ScannedFile] = [
            {"path": o.path, "checksum": o.checksum, "size": o.size, "mtime": iso_from_ns(o.mtime_ns)}
            for o in observations
            if o.kind == "changed"
        ]
        unreadable: list[UnreadableFile] = [{"path": o.path, "error": o.error} for o in observations if o.kind == "unreadable"]
        self._emit(FilesScanned(files=files, unreadable=unreadable))

    def recover(self, grants: Iterable[Grant], *, rebase: bool = False) -> None:
        """A restarted manager: judge what changed in the workspace while it was down, then keep
        the content of every path still under a lock (`grants`) as that lock's base.

        Called with the journal's locks restored and before any of them is released, so a change
        the crashed holder made under its lock is its own, and a change nobody was entitled to
        make is a conflict, exactly as if the watcher had seen it live.
        """
        if not self._open_index():
            return
        index, kept = self._parts()
        known = self._state.files
        changes = []
        seen = set()
        for obs in index.scan():
            seen.add(obs.path)
            file = known.get(obs.path)
            existed = file is not None and not file.deleted and file.error is None
            if obs.kind == "changed" and existed and file is not None and file.checksum == obs.checksum:
                continue  # as the journal knew it
            changes.append(replace(obs, created=not existed, previous=file.checksum if file and existed else ""))
        for path, file in known.items():
            if path not in seen and not file.deleted and file.error is None:
                changes.append(Observation(path, "deleted", previous=file.checksum))
        self._forget_lost_content(known)
        if rebase:  # a fork's copied workspace: its files as they are, not judged (engine/fork.py)
            self._rebase(changes)
        elif changes:
            self.on_changes(pair_renames(changes))
        for grant in grants:
            if not is_named(grant.resource_id):
                kept.keep_bases(grant.resource_id)

    def _rebase(self, changes: list[Observation]) -> None:
        scanned: list[ScannedFile] = [{"path": o.path, "checksum": o.checksum, "size": o.size,
                                       "mtime": iso_from_ns(o.mtime_ns)} for o in changes if o.kind == "changed"]
        if scanned:
            self._emit(FilesScanned(files=scanned, unreadable=[]))
        for obs in changes:
            if obs.kind == "deleted":
                self._emit(FileDeleted(path=obs.path))

    def _forget_lost_content(self, known: dict[str, FileState]) -> None:
        """Conflicts stay after a restart, but the content kept for their revert and merge died
        with the old process: a rescan of those files says so (the reducer clears canRevert/canMerge)."""
        index, _ = self._parts()
        files: list[ScannedFile] = []
        for path, file in known.items():
            entry = index.entries.get(path)
            if file.status == "conflict" and entry is not None and not entry.error:
                files.append({"path": path, "checksum": entry.checksum, "size": entry.size, "mtime": iso_from_ns(entry.mtime_ns)})
        if files:
            self._emit(FilesScanned(files=files, unreadable=[]))

    def _open_index(self) -> bool:
        """The stat/checksum index and the kept-content store (no OS watch yet)."""
        if not Path(self.workspace).is_dir():
            log.warning("workspace %s is not a directory: files are not watched", self.workspace)
            return False
        ignore, spill_dir = self._journal_places()
        self.index = FileIndex(self.workspace, ignore=ignore)
        self._kept = KeptContent(ContentStore(spill_dir), self.index, self.workspace)
        self._resolutions = Resolutions(self.workspace, self._recorder, self.index, self._kept, self.holders, self.settle)
        return True

    def _journal_places(self) -> tuple[list[str], Path]:
        """Paths the watcher ignores (the journal's directory) and where large kept content goes."""
        if self._journal_path is None:
            return [], Path(tempfile.mkdtemp(prefix="sprintdeck-kept-"))
        journal_file = Path(self._journal_path).resolve()
        spill = journal_file.parent / f"{journal_file.name}.kept"
        workspace = Path(self.workspace).resolve()
        if not journal_file.is_relative_to(workspace):
            return [], spill
        journal_dir = journal_file.parent.relative_to(workspace).as_posix()
        if journal_dir != ".":
            return [journal_dir], spill
        # The journal sits in the workspace root: ignore the journal itself, its recovery copy and
        # its kept content (watching them would journal every journal write, without end).
        name = journal_file.name
        return [name, f"{name}.broken", spill.name], spill

    async def stop(self) -> None:
        """Judge what is still pending (a last rescan, deferred report checks), then stop watching."""
        if self.watcher is not None:
            await self.watcher.stop()
        if self.index is not None:
            observations = self.index.scan()
            if observations:
                self.on_changes(pair_renames(observations))
        for path in list(self._deferred):
            handle, args = self._deferred[path]
            handle.cancel()
            self._recheck(*args)  # decide now rather than lose the change
        if self._kept is not None:
            self._kept.close()
        self.index = None
        self._resolutions = None

    # ------------------------------------------------------------ attribution

    def holders(self, path: str, exclude: Iterable[str] = ()) -> list[Grant]:
        """The live grants covering `path` (on it or a directory above), minus `exclude` lock ids."""
        skip = set(exclude)
        try:
            grants = self._covering(path)
        except LockError:
            return []
        return [g for g in grants if g.lock_id not in skip] if skip else grants

    def judge(self, path: str, exclude: Iterable[str] = ()) -> Verdict:
        grants = self.holders(path, exclude)
        described = [_holder(g) for g in grants]
        writers = sorted({g.owner for g in grants if g.mode != "read"})
        superseded = self.contested.on(path) if self.contested else []
        if superseded:
            detail = self.contested.detail(superseded[0], writers)
            return Verdict(None, [_holder(g) for g in superseded] + described, "superseded_holder", detail)
        if len(writers) == 1:
            return Verdict(writers[0], described)
        if len(writers) > 1:
            return Verdict(None, described, "several_writers", f"write locks of {', '.join(writers)}")
        if grants:
            readers = ", ".join(sorted({g.owner for g in grants}))
            return Verdict(None, described, "read_lock_only", f"changed while only read locks were held ({readers})")
        return Verdict(None, described, "no_lock", "changed without any lock")

    def on_changes(self, observations: list[Observation], exclude: Iterable[str] = ()) -> None:
        """Judge and record each observation (called by the watcher and by settling)."""
        excluded = list(exclude)
        for obs in observations:
            if obs.kind == "unreadable":
                self._emit(FileUnreadable(path=obs.path, error=obs.error))
            elif obs.kind == "deleted":
                self._on_deleted(obs, excluded)
            else:
                self._on_changed(obs, excluded)

    def _on_changed(self, obs: Observation, exclude: list[str]) -> None:
        if obs.renamed_from is not None and self._fresh(obs.renamed_from):
            self._cancel_deferred(obs.renamed_from)  # its temporary name was never anyone's file:
            obs = replace(obs, renamed_from=None)  # the path was written in place
        verdict = self.judge(obs.path, exclude)
        if obs.created and obs.renamed_from is None and verdict.reason == "no_lock" and obs.path not in self._state.files:
            self._defer(obs, verdict, None, CREATION_GRACE)  # a temporary name, unless it stays
            return
        source_conflict = None
        if obs.renamed_from is not None:
            source = self.judge(obs.renamed_from, exclude)
            if source.reason is not None:
                source_conflict = self._conflict_record(obs.renamed_from, source, "deleted", unlocked_base=False)
        self._cancel_deferred(obs.path)
        if verdict.owner is not None and self._mismatch(obs.path, verdict.owner, obs.checksum, obs.content):
            self._defer(obs, verdict, source_conflict, REPORT_GRACE)
            return
        self._record_change(obs, verdict, source_conflict)

    def _fresh(self, path: str) -> bool:
        """A new unlocked file still within its CREATION_GRACE (nothing recorded of it yet)."""
        pending = self._deferred.get(path)
        return pending is not None and pending[1][0].created and pending[1][1].reason == "no_lock"

    def _record_change(self, obs: Observation, verdict: Verdict, source_conflict: ConflictRecord | None) -> None:
        index, kept = self._parts()
        change = "renamed" if obs.renamed_from else ("created" if obs.created else "modified")
        conflict = None
        if verdict.reason is not None:
            conflict = self._conflict_record(obs.path, verdict, change, unlocked_base=obs.created)
        elif verdict.owner is not None and not self._in_conflict(obs.path):
            kept.keep_good(obs.path, obs.content, obs.content_key)
        if obs.renamed_from is not None and source_conflict is None:
            kept.forget(obs.renamed_from)
        self._emit(FileChanged(
            path=obs.path, checksum=obs.checksum, size=obs.size, mtime=iso_from_ns(obs.mtime_ns), change=change,
            renamed_from=obs.renamed_from, status="conflict" if conflict else "modified",
            modified_by=verdict.owner if conflict is None else None, conflict=conflict, source_conflict=source_conflict,
        ))

    def _on_deleted(self, obs: Observation, exclude: list[str]) -> None:
        _, kept = self._parts()
        if self._fresh(obs.path):
            self._cancel_deferred(obs.path)
            return  # a temporary file came and went: nobody's work, nothing to record
        self._cancel_deferred(obs.path)
        verdict = self.judge(obs.path, exclude)
        conflict = None
        if verdict.reason is not None:
            conflict = self._conflict_record(obs.path, verdict, "deleted", unlocked_base=False)
        elif obs.path in kept and not self._in_conflict(obs.path):
            kept.keep_good(obs.path, ABSENT)
        self._emit(FileDeleted(path=obs.path, status="conflict" if conflict else "deleted",
                               modified_by=verdict.owner if conflict is None else None, conflict=conflict))

    def _in_conflict(self, path: str) -> bool:
        """While a conflict waits, the last good content stays as it is: revert needs it."""
        file = self._state.files.get(path)
        return file is not None and file.status == "conflict"

    def _conflict_record(self, path: str, verdict: Verdict, change: str, *, unlocked_base: bool) -> ConflictRecord:
        """The event's conflict record; a file created outside any lock can be reverted (removed)."""
        _, kept_content = self._parts()
        if unlocked_base:
            kept_content.keep_nothing(path)
        kept = kept_content.get(path)
        return {
            "reason": verdict.reason,
            "detail": verdict.detail,
            "change": change,
            "holders": verdict.holders,
            "canRevert": kept is not None,
            "canMerge": kept is not None and kept.base is not ABSENT and kept.good is not ABSENT,
        }

    # ------------------------------------------------------------ reports (state_update)

    def _mismatch(self, path: str, owner: str, checksum: str, content: bytes | None) -> bool:
        """Whether the owner reported, under a lock it still holds, content other than `checksum`."""
        report = self.reports.get(path)
        if report is None or report.agent_id != owner:
            return False
        tokens = {g.token for g in self.holders(path) if g.owner == owner}
        if report.token is not None and report.token not in tokens:
            return False
        algorithm = report.checksum.split(":", 1)[0]
        if algorithm == checksum.split(":", 1)[0]:
            return report.checksum != checksum
        index, _ = self._parts()
        try:
            data = content if content is not None else index.read(path)
            return checksum_with(algorithm, data) != report.checksum
        except (OSError, ValueError):
            return True

    def _defer(self, obs: Observation, verdict: Verdict, source_conflict: ConflictRecord | None, grace: float) -> None:
        """Judge this change after `grace`: time for its holder to report the content, or for a
        temporary file to be renamed away."""
        args = (obs, verdict, source_conflict)
        handle = asyncio.get_running_loop().call_later(grace, self._recheck, *args)
        self._deferred[obs.path] = (handle, args)

    def _cancel_deferred(self, path: str) -> None:
        pending = self._deferred.pop(path, None)
        if pending is not None:
            pending[0].cancel()

    def _recheck(self, obs: Observation, verdict: Verdict, source_conflict: ConflictRecord | None) -> None:
        if obs.created and verdict.reason == "no_lock" and not (Path(self.workspace) / obs.path).exists():
            return self._defer(obs, verdict, source_conflict, CREATION_GRACE)  # renamed away, the news is late
        self._deferred.pop(obs.path, None)
        if verdict.owner is not None and self._mismatch(obs.path, verdict.owner, obs.checksum, obs.content):
            report = self.reports[obs.path]
            detail = f"content {obs.checksum} differs from {report.checksum} reported by {report.agent_id}"
            verdict = Verdict(None, verdict.holders, "checksum_mismatch", detail)
        self._record_change(obs, verdict, source_conflict)

    def on_report(self, agent_id: str, path: str, checksum: str, lock_id: str | None, token: int | None) -> None:
        """Record a holder's fenced report, then check it against the content on disk now."""
        self.reports[path] = Report(agent_id, checksum, lock_id, token)
        self._emit(FileReported(path=path, checksum=checksum, agent_id=agent_id, lock_id=lock_id, token=token))
        if self.index is None:
            return
        self.settle([path])
        entry = self.index.entries.get(path)
        if entry is None or entry.error or path in self._deferred:
            return
        if self._mismatch(path, agent_id, entry.checksum, None) and not self._in_conflict(path):
            verdict = self.judge(path)
            detail = f"content {entry.checksum} differs from {checksum} reported by {agent_id}"
            obs = Observation(path, "changed", checksum=entry.checksum, size=entry.size, mtime_ns=entry.mtime_ns)
            self._record_change(obs, Verdict(None, verdict.holders, "checksum_mismatch", detail), None)

    # ------------------------------------------------------------ lock hand-overs (the lock desk's hooks)

    def settle(self, resource_ids: Iterable[str], exclude: Iterable[str] = ()) -> None:
        """Judge any change under these paths now, against the holders of this moment."""
        if self.index is None:
            return
        observations: list[Observation] = []
        for resource_id in dict.fromkeys(resource_ids):
            observations += self.index.reconcile(resource_id)
        if observations:
            self.on_changes(pair_renames(observations), exclude)

    def before_grants(self, grants: Iterable[Grant]) -> None:
        """Settle the paths about to be locked (as if unlocked), then keep their content as the base."""
        files = [g for g in grants if not is_named(g.resource_id)]
        if self.index is None or self._kept is None or not files:
            return
        with self.index.remembering() as fresh:  # what the settle reads, the base need not read again
            self.settle([g.resource_id for g in files], exclude=[g.lock_id for g in files])
        for grant in files:
            self._kept.keep_bases(grant.resource_id, fresh, budget=KEEP_PER_GRANT)

    def before_release(self, grants: Iterable[Grant]) -> None:
        """Settle what changed under these locks while they are still held (read locks too:
        a change under one is a conflict, and judging it now does not depend on notice timing)."""
        paths = [g.resource_id for g in grants if not is_named(g.resource_id)]
        if paths:
            self._released.update(paths)
            self.settle(paths)

    def leases_expired(self, grants: Iterable[Grant]) -> None:
        """Leases that ran out (their holder went silent): their paths are contested until it is heard from."""
        tasks = self._state.tasks
        grants = list(grants)
        self.contested.contest(grants, {g.task_id: tasks[g.task_id].attempt for g in grants if g.task_id in tasks})

    def forget_grants(self, grants: Iterable[Grant]) -> None:
        """Grants that were never made after all (their grant failed): drop what was kept for them."""
        self._released.update(g.resource_id for g in grants if not is_named(g.resource_id))
        self.after_release()

    def after_release(self) -> None:
        """Drop kept content of released paths now under no lock and not in conflict.

        Only paths under the locks released since the last call can have lost their last holder,
        so only those are looked at: the cost follows the release, not the number of locks held.
        """
        released, self._released = self._released, set()
        if self._kept is None:
            return
        for path in self._kept.under(released):
            if not self.holders(path) and not self._in_conflict(path):
                self._kept.forget(path)

    # ------------------------------------------------------------ resolutions

    def resolutions(self) -> Resolutions:
        """The conflict resolutions, while the watcher runs (else ResolutionError says so)."""
        if self._resolutions is None:
            raise ResolutionError("the file watcher is not running")
        return self._resolutions

    def diff(self, path: str) -> str:
        """A unified diff from the last good content to what is on disk now (for the escalation modal)."""
        if self._resolutions is None:
            return unified_diff_of(path, None, None, kept=False)
        return self._resolutions.diff(path)


# ---------------------------------------------------------------- helpers


def _holder(grant: Grant) -> HolderRecord:
    return {
        "agentId": grant.owner,
        "lockType": grant.mode,
        "resourceId": grant.resource_id,
        "lockId": grant.lock_id,
        "token": grant.token,
        "taskId": grant.task_id,
    }
