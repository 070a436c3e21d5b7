"""Attribution of file changes, conflicts, and their resolution (DESIGN §7, issue 4).

The watcher says *what* changed; `FileGuard` decides *whose* change it was, using the lock manager
at that moment, and records the decision as an event through the manager (so the journal replays
it).  The rules:

* a change to a path under exactly one agent's write/exclusive lock is `modified` by that agent,
  unless the holder has reported (a fenced `state_update`) a checksum the content does not match;
* a change under no such lock, or under read locks only, or not matching the holder's report, is a
  `conflict` naming every lock that bore on the path then.

Lock hand-overs race with notifications (an agent writes, completes, and its lock is released
before the notice arrives), so the manager *settles* the paths of a lock just before it is granted
or released: the stat cache is checked there and then, and a change is judged against the holders
of that moment.  The notice that arrives later finds nothing new.

While a path is under any lock, its content when the lock period began (`base`) and its last good
content (`good`) are kept in a `ContentStore`: small blobs in memory up to a budget, the rest
spilled to a directory beside the journal.  That is what revert restores and what a three-way
merge (base, good, current) works from.

Keeping content costs no more reads than judging it: blobs are named by the same xxh3 checksum
the index computes, so content the index just read is stored under the checksum it already has
(`Observation.content_key`, and the bytes a settle re-hashed, collected by
`FileIndex.remembering`).  A file the settle did not need to read (its entry is clean: not racy,
stat unchanged) is kept by reference when the store holds its checksum, and the store keeps the
last few MiB of blobs whose last reference was dropped (`RECENT_BUDGET`), so a file released and
locked again unchanged is not read again.  Only the index's judgment "unchanged" lets such a blob
stand for the file: a racy entry is re-hashed by the settle first, exactly as before.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import EventType
from engine.locks import Grant, LockError
from engine.merge import MergeResult, merge3
from engine.models import FileState
from engine.resources import is_named
from engine.file_index import FileIndex, Observation, checksum_bytes, checksum_with, pair_renames
from engine.watch import Watcher

if TYPE_CHECKING:
    from engine.manager import SprintManager

log = logging.getLogger(__name__)

MEMORY_BUDGET = 32 << 20  # bytes of kept content held in memory, all files together
SPILL_OVER = 256 << 10  # a single blob larger than this always goes to disk
RECENT_BUDGET = 4 << 20  # bytes of dropped in-memory blobs kept for a re-lock of unchanged files
KEEP_PER_GRANT = 64 << 20  # at most this much content is kept when one (directory) lock is granted
REPORT_GRACE = 0.25  # seconds a change may wait for its holder's state_update before it is a conflict
ABSENT = None  # kept content of a path that did not exist


class ResolutionError(ValueError):
    """A resolution that cannot apply (no conflict, nothing kept to revert to, ...); nothing changed."""


# ---------------------------------------------------------------- kept content


class ContentStore:
    """Content-addressed blobs with reference counts: in memory up to a budget, spilled beyond it.

    A blob whose last reference goes is not freed at once when it was in memory: it waits in a
    small least-recently-dropped cache (`recent_budget` bytes, not counted in `memory_bytes`),
    from which `holds`/`ref` bring it back, so content the index says is unchanged need not be
    read again when its path is locked again.
    """

    def __init__(
        self,
        spill_dir: Path,
        *,
        memory_budget: int = MEMORY_BUDGET,
        spill_over: int = SPILL_OVER,
        recent_budget: int = RECENT_BUDGET,
    ) -> None:
        self.spill_dir = spill_dir
        self.memory_budget = memory_budget
        self.spill_over = spill_over
        self.recent_budget = recent_budget
        self._memory: dict[str, bytes] = {}
        self._spilled: set[str] = set()
        self._refs: dict[str, int] = {}
        self._recent: dict[str, bytes] = {}  # unreferenced, oldest drop first
        self.memory_bytes = 0
        self.recent_bytes = 0

    def put(self, data: bytes, key: str | None = None) -> str:
        """One more reference to `data`; its key.  A caller that already has `checksum_bytes(data)`
        (the index computed it reading the file) passes it as `key` so the bytes are not hashed twice."""
        if key is None:
            key = checksum_bytes(data)
        if key not in self._refs:
            self._unrecent(key)  # the same bytes, by their checksum: hold the ones given
            self._hold(key, data)
        self._refs[key] = self._refs.get(key, 0) + 1
        return key

    def holds(self, key: str) -> bool:
        """Whether `ref(key)` can take a reference without the content (held, or recently dropped)."""
        return key in self._refs or key in self._recent

    def ref(self, key: str) -> None:
        """One more holder of a stored (or recently dropped) blob."""
        if key not in self._refs:
            data = self._unrecent(key)
            if data is None:
                raise KeyError(key)
            self._hold(key, data)
        self._refs[key] = self._refs.get(key, 0) + 1

    def get(self, key: str) -> bytes:
        if key in self._memory:
            return self._memory[key]
        return (self.spill_dir / _blob_name(key)).read_bytes()

    def drop(self, key: str | None) -> None:
        if key is None or key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key]:
            return
        del self._refs[key]
        if key in self._memory:
            data = self._memory.pop(key)
            self.memory_bytes -= len(data)
            self._recently_dropped(key, data)
        elif key in self._spilled:
            self._spilled.discard(key)
            (self.spill_dir / _blob_name(key)).unlink(missing_ok=True)

    @property
    def spilled(self) -> int:
        return len(self._spilled)

    def close(self) -> None:
        self._recent.clear()
        self.recent_bytes = 0
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def _hold(self, key: str, data: bytes) -> None:
        """Place a blob that has no holder yet: in memory within the budget, else on disk."""
        self._refs[key] = 0
        if len(data) > self.spill_over or self.memory_bytes + len(data) > self.memory_budget:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            (self.spill_dir / _blob_name(key)).write_bytes(data)
            self._spilled.add(key)
        else:
            self._memory[key] = data
            self.memory_bytes += len(data)

    def _recently_dropped(self, key: str, data: bytes) -> None:
        """Keep an unreferenced blob for a while; the oldest go once the cache is over budget."""
        if len(data) > self.recent_budget:
            return
        self._recent[key] = data
        self.recent_bytes += len(data)
        while self.recent_bytes > self.recent_budget:
            self.recent_bytes -= len(self._recent.pop(next(iter(self._recent))))

    def _unrecent(self, key: str) -> bytes | None:
        data = self._recent.pop(key, None)
        if data is not None:
            self.recent_bytes -= len(data)
        return data


def _blob_name(key: str) -> str:
    return key.replace(":", "-")


@dataclass
class Kept:
    """Blob keys of a path's content when its lock period began and after its last good change."""

    base: str | None
    good: str | None


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
    holders: list[dict[str, Any]]
    reason: str | None = None
    detail: str = ""


# ---------------------------------------------------------------- the guard


class FileGuard:
    """The manager's file side: the watcher, attribution, kept content and resolutions."""

    def __init__(self, manager: SprintManager) -> None:
        self.manager = manager
        self.index: FileIndex | None = None
        self.watcher: Watcher | None = None
        self.store: ContentStore | None = None
        self.kept: dict[str, Kept] = {}
        self.reports: dict[str, Report] = {}
        self._deferred: dict[str, tuple[asyncio.TimerHandle, tuple[Any, ...]]] = {}
        self._released: set[str] = set()  # resource ids released since the last `after_release`

    @property
    def running(self) -> bool:
        return self.index is not None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Arm the OS watch, then scan (so nothing between the two is missed) and journal the scan.

        After `recover` the index already holds the workspace as the journal knew it, so the scan
        only finds what changed since, and that is judged like any other change.
        """
        recovered = self.running
        if not recovered and not self._open_index():
            return
        self.watcher = Watcher(self.index, self.on_changes)
        await self.watcher.start()
        observations = await asyncio.to_thread(self.index.scan)
        if recovered:
            if observations:
                self.on_changes(pair_renames(observations))
            return
        files = [
            {"path": o.path, "checksum": o.checksum, "size": o.size, "mtime": _iso_ns(o.mtime_ns)}
            for o in observations
            if o.kind == "changed"
        ]
        unreadable = [{"path": o.path, "error": o.error} for o in observations if o.kind == "unreadable"]
        self.manager.emit(EventType.FILES_SCANNED, files=files, unreadable=unreadable)

    def recover(self) -> None:
        """A restarted manager: judge what changed in the workspace while it was down, then keep
        the content of every path still under a lock as that lock's base (for revert and merge).

        Called with the journal's locks restored and before any of them is released, so a change
        the crashed holder made under its lock is its own, and a change nobody was entitled to
        make is a conflict, exactly as if the watcher had seen it live.
        """
        if not self._open_index():
            return
        known = self.manager.state.files
        changes = []
        seen = set()
        for obs in self.index.scan():
            seen.add(obs.path)
            file = known.get(obs.path)
            existed = file is not None and file.status != "deleted" and file.error is None
            if obs.kind == "changed" and existed and file.checksum == obs.checksum:
                continue  # as the journal knew it
            changes.append(replace(obs, created=not existed, previous=file.checksum if existed else ""))
        for path, file in known.items():
            if path not in seen and file.status != "deleted" and file.error is None:
                changes.append(Observation(path, "deleted", previous=file.checksum))
        self._forget_lost_content(known)
        if changes:
            self.on_changes(pair_renames(changes))
        for grant in self.manager.locks.grants():
            if not is_named(grant.resource_id):
                for path in self._paths_under(grant.resource_id):
                    self._keep_base(path)

    def _forget_lost_content(self, known: dict[str, FileState]) -> None:
        """Conflicts stay after a restart, but the content kept for their revert and merge died
        with the old process: a rescan of those files says so (the reducer clears canRevert/canMerge)."""
        files = []
        for path, file in known.items():
            entry = self.index.entries.get(path)
            if file.status == "conflict" and entry is not None and not entry.error:
                files.append({"path": path, "checksum": entry.checksum, "size": entry.size, "mtime": _iso_ns(entry.mtime_ns)})
        if files:
            self.manager.emit(EventType.FILES_SCANNED, files=files, unreadable=[])

    def _open_index(self) -> bool:
        """The stat/checksum index and the kept-content store (no OS watch yet)."""
        manager = self.manager
        if not Path(manager.workspace).is_dir():
            log.warning("workspace %s is not a directory: files are not watched", manager.workspace)
            return False
        ignore, spill_dir = self._journal_places()
        self.index = FileIndex(manager.workspace, ignore=ignore)
        self.store = ContentStore(spill_dir)
        return True

    def _journal_places(self) -> tuple[list[str], Path]:
        """Paths the watcher ignores (the journal's directory) and where large kept content goes."""
        journal = self.manager.journal
        if journal is None:
            return [], Path(tempfile.mkdtemp(prefix="sprintdeck-kept-"))
        journal_file = Path(journal.path).resolve()
        spill = journal_file.parent / f"{journal_file.name}.kept"
        workspace = Path(self.manager.workspace).resolve()
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
        if self.running:
            observations = self.index.scan()
            if observations:
                self.on_changes(pair_renames(observations))
        for path in list(self._deferred):
            handle, args = self._deferred[path]
            handle.cancel()
            self._recheck(*args)  # decide now rather than lose the change
        if self.store is not None:
            self.store.close()
        self.index = None

    # ------------------------------------------------------------ attribution

    def holders(self, path: str, exclude: Iterable[str] = ()) -> list[Grant]:
        """The live grants covering `path` (on it or a directory above), minus `exclude` lock ids."""
        skip = set(exclude)
        try:
            grants = self.manager.locks.covering(path)
        except LockError:
            return []
        return [g for g in grants if g.lock_id not in skip] if skip else grants

    def judge(self, path: str, exclude: Iterable[str] = ()) -> Verdict:
        grants = self.holders(path, exclude)
        described = [_holder(g) for g in grants]
        writers = sorted({g.owner for g in grants if g.mode != "read"})
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
                self.manager.emit(EventType.FILE_UNREADABLE, path=obs.path, error=obs.error)
            elif obs.kind == "deleted":
                self._on_deleted(obs, excluded)
            else:
                self._on_changed(obs, excluded)

    def _on_changed(self, obs: Observation, exclude: list[str]) -> None:
        verdict = self.judge(obs.path, exclude)
        source_conflict = None
        if obs.renamed_from is not None:
            source = self.judge(obs.renamed_from, exclude)
            if source.reason is not None:
                source_conflict = self._conflict_data(obs.renamed_from, source, "deleted", unlocked_base=False)
        self._cancel_deferred(obs.path)
        if verdict.owner is not None and self._mismatch(obs.path, verdict.owner, obs.checksum, obs.content):
            self._defer(obs, verdict, source_conflict)
            return
        self._record_change(obs, verdict, source_conflict)

    def _record_change(self, obs: Observation, verdict: Verdict, source_conflict: dict[str, Any] | None) -> None:
        change = "renamed" if obs.renamed_from else ("created" if obs.created else "modified")
        conflict = None
        if verdict.reason is not None:
            conflict = self._conflict_data(obs.path, verdict, change, unlocked_base=obs.created)
        elif verdict.owner is not None:
            self._keep_good(obs.path, obs.content, obs.content_key)
        if obs.renamed_from is not None and source_conflict is None:
            self._forget_kept(obs.renamed_from)
        self.manager.emit(
            EventType.FILE_CHANGED,
            path=obs.path,
            checksum=obs.checksum,
            size=obs.size,
            mtime=_iso_ns(obs.mtime_ns),
            change=change,
            renamedFrom=obs.renamed_from,
            status="conflict" if conflict else "modified",
            modifiedBy=verdict.owner if conflict is None else None,
            conflict=conflict,
            sourceConflict=source_conflict,
        )

    def _on_deleted(self, obs: Observation, exclude: list[str]) -> None:
        self._cancel_deferred(obs.path)
        verdict = self.judge(obs.path, exclude)
        conflict = None
        if verdict.reason is not None:
            conflict = self._conflict_data(obs.path, verdict, "deleted", unlocked_base=False)
        elif obs.path in self.kept:
            self._keep_good(obs.path, ABSENT)
        self.manager.emit(
            EventType.FILE_DELETED,
            path=obs.path,
            status="conflict" if conflict else "deleted",
            modifiedBy=verdict.owner if conflict is None else None,
            conflict=conflict,
        )

    def _conflict_data(self, path: str, verdict: Verdict, change: str, *, unlocked_base: bool) -> dict[str, Any]:
        """The event's conflict record; a file created outside any lock can be reverted (removed)."""
        if unlocked_base and path not in self.kept:
            self.kept[path] = Kept(ABSENT, ABSENT)
        kept = self.kept.get(path)
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
        try:
            data = content if content is not None else self.index.read(path)
            return checksum_with(algorithm, data) != report.checksum
        except (OSError, ValueError):
            return True

    def _defer(self, obs: Observation, verdict: Verdict, source_conflict: dict[str, Any] | None) -> None:
        """Give the holder REPORT_GRACE to report this content before calling it a conflict."""
        args = (obs, verdict, source_conflict)
        handle = asyncio.get_running_loop().call_later(REPORT_GRACE, self._recheck, *args)
        self._deferred[obs.path] = (handle, args)

    def _cancel_deferred(self, path: str) -> None:
        pending = self._deferred.pop(path, None)
        if pending is not None:
            pending[0].cancel()

    def _recheck(self, obs: Observation, verdict: Verdict, source_conflict: dict[str, Any] | None) -> None:
        self._deferred.pop(obs.path, None)
        if verdict.owner is not None and self._mismatch(obs.path, verdict.owner, obs.checksum, obs.content):
            report = self.reports[obs.path]
            detail = f"content {obs.checksum} differs from {report.checksum} reported by {report.agent_id}"
            verdict = Verdict(None, verdict.holders, "checksum_mismatch", detail)
        self._record_change(obs, verdict, source_conflict)

    def on_report(self, agent_id: str, path: str, checksum: str, lock_id: str | None, token: int | None) -> None:
        """Record a holder's fenced report, then check it against the content on disk now."""
        self.reports[path] = Report(agent_id, checksum, lock_id, token)
        self.manager.emit(EventType.FILE_REPORTED, path=path, checksum=checksum, agentId=agent_id, lockId=lock_id, token=token)
        if not self.running:
            return
        self.settle([path])
        entry = self.index.entries.get(path)
        if entry is None or entry.error or path in self._deferred:
            return
        if self._mismatch(path, agent_id, entry.checksum, None):
            verdict = self.judge(path)
            detail = f"content {entry.checksum} differs from {checksum} reported by {agent_id}"
            current = self.manager.state.files.get(path)
            obs = Observation(path, "changed", checksum=entry.checksum, size=entry.size, mtime_ns=entry.mtime_ns)
            if current is None or current.status != "conflict":
                self._record_change(obs, Verdict(None, verdict.holders, "checksum_mismatch", detail), None)

    # ------------------------------------------------------------ lock hand-overs

    def settle(self, resource_ids: Iterable[str], exclude: Iterable[str] = ()) -> None:
        """Judge any change under these paths now, against the holders of this moment."""
        if not self.running:
            return
        observations: list[Observation] = []
        for resource_id in dict.fromkeys(resource_ids):
            observations += self.index.reconcile(resource_id)
        if observations:
            self.on_changes(pair_renames(observations), exclude)

    def before_grants(self, grants: Iterable[Grant]) -> None:
        """Settle the paths about to be locked (as if unlocked), then keep their content as the base."""
        grants = [g for g in grants if not is_named(g.resource_id)]
        if not self.running or not grants:
            return
        with self.index.remembering() as fresh:  # what the settle reads, the base need not read again
            self.settle([g.resource_id for g in grants], exclude=[g.lock_id for g in grants])
        for grant in grants:
            budget = KEEP_PER_GRANT  # a lock on a huge directory must not copy the repository
            for path in self._paths_under(grant.resource_id):
                entry = self.index.entries.get(path)
                budget -= entry.size if entry is not None and entry.size > 0 else 0
                if budget < 0:
                    break
                self._keep_base(path, fresh)

    def before_release(self, grants: Iterable[Grant]) -> None:
        """Settle what changed under these locks while they are still held (read locks too:
        a change under one is a conflict, and judging it now does not depend on notice timing)."""
        paths = [g.resource_id for g in grants if not is_named(g.resource_id)]
        if paths:
            self._released.update(paths)
            self.settle(paths)

    def after_release(self) -> None:
        """Drop kept content of released paths now under no lock and not in conflict.

        Only paths under the locks released since the last call can have lost their last holder,
        so only those are looked at: the cost follows the release, not the number of locks held.
        """
        released, self._released = self._released, set()
        for path in self._kept_under(released):
            file = self.manager.state.files.get(path)
            if not self.holders(path) and (file is None or file.status != "conflict"):
                self._forget_kept(path)

    def _kept_under(self, resource_ids: set[str]) -> list[str]:
        """Kept paths on or below these ids (a string test per kept path; no lock look-ups)."""
        prefixes = tuple(r + "/" for r in resource_ids)
        return [p for p in self.kept if p in resource_ids or p.startswith(prefixes)]

    def _paths_under(self, resource_id: str) -> list[str]:
        if resource_id in self.index.entries:
            return [resource_id]
        below = self.index.below(resource_id)
        is_dir = below or (self.manager.workspace / resource_id).is_dir()
        return below if is_dir else [resource_id]

    def _keep_base(self, path: str, fresh: dict[str, tuple[str, bytes]] | None = None) -> None:
        """Keep `path`'s content as the base (and good) of a lock period starting now.

        Called right after `path` was reconciled (a settle, a scan, our own write), so its index
        entry is the file as it is now; `fresh` holds what that reconcile read (`remembering`).
        """
        if path in self.kept:
            return
        try:
            key = self._store_current(path, fresh or {})
        except OSError:
            return
        self.kept[path] = Kept(key, key)
        if key is not None:
            self.store.ref(key)  # base and good each hold a reference

    def _store_current(self, path: str, fresh: dict[str, tuple[str, bytes]]) -> str | None:
        """A store reference to the content of a just-reconciled `path` (ABSENT when not a file),
        reading the file only when neither the reconcile nor the store already has its bytes."""
        entry = self.index.entries.get(path)
        if entry is None:
            return ABSENT
        checksum, data = fresh.get(path, ("", b""))
        if checksum and checksum == entry.checksum:
            return self.store.put(data, key=checksum)  # read and hashed by the settle a moment ago
        clean = self.index.clean_checksum(path)
        if clean is not None and self.store.holds(clean):
            self.store.ref(clean)  # unchanged by the index's own test, and its bytes are held
            return clean
        return self.store.put(self.index.read(path))

    def _keep_good(self, path: str, content: bytes | None, key: str | None = None) -> None:
        """The holder's change is the new last good content (not while a conflict waits: revert needs the old).

        `key` is the checksum of `content` when the caller has it (the index hashed it reading it)."""
        file = self.manager.state.files.get(path)
        if file is not None and file.status == "conflict":
            return
        kept = self.kept.get(path)
        if kept is None:
            kept = self.kept[path] = Kept(ABSENT, ABSENT)
        if content is None and path in self.index.entries:
            try:
                content, key = self.index.read(path), None
            except OSError:
                return
        self.store.drop(kept.good)
        kept.good = self.store.put(content, key) if content is not None else ABSENT

    def _forget_kept(self, path: str) -> None:
        kept = self.kept.pop(path, None)
        if kept is not None:
            self.store.drop(kept.base)
            self.store.drop(kept.good)

    # ------------------------------------------------------------ resolutions

    def _conflicted(self, path: str) -> None:
        file = self.manager.state.files.get(path)
        if file is None or file.status != "conflict":
            raise ResolutionError(f"{path} is not in conflict")
        if not self.running:
            raise ResolutionError("the file watcher is not running")

    def _current(self, path: str) -> bytes | None:
        try:
            return self.index.read(path)
        except FileNotFoundError:
            return None

    def check(self, path: str, how: str) -> None:
        """Raise ResolutionError when `how` cannot apply to `path`; changes nothing."""
        self._conflicted(path)
        kept = self.kept.get(path)
        if how == "revert" and kept is None:
            raise ResolutionError(f"no last good content of {path} was kept (it was under no lock)")
        if how == "merge":
            if kept is None or kept.base is ABSENT or kept.good is ABSENT:
                raise ResolutionError(f"no merge base is known for {path}")
            if not (self.manager.workspace / path).is_file():
                raise ResolutionError(f"{path} is gone from disk; accept or revert instead")

    def accept(self, path: str, by: str) -> None:
        """The current content (or absence) becomes the new base."""
        self.check(path, "accept")
        self.settle([path])
        self._forget_kept(path)
        if self.holders(path):
            self._keep_base(path)
        self._resolved(path, "accept", by)

    def revert(self, path: str, by: str) -> None:
        """Put the last good content back (remove the file when it did not exist)."""
        self.check(path, "revert")
        good = self.kept[path].good
        self._write(path, None if good is ABSENT else self.store.get(good))
        self._forget_kept(path)
        if self.holders(path):
            self._keep_base(path)
        self._resolved(path, "revert", by)

    def merge(self, path: str, by: str) -> MergeResult:
        """Three-way merge base -> last good and base -> current; with markers, it stays a conflict."""
        self.check(path, "merge")
        kept = self.kept[path]
        current = self._current(path) or b""
        result = merge3(
            self.store.get(kept.base),
            self.store.get(kept.good),
            current,
            labels=("last good", "base", "current"),
        )
        if not result.clean:
            self.manager.emit(
                EventType.CONFLICT_RESOLVED,
                path=path,
                resolution="merge",
                by=by,
                status="conflict",
                conflicts=result.conflicts,
                tool=result.tool,
            )
            return result
        self._write(path, result.content)
        self._forget_kept(path)
        if self.holders(path):
            self._keep_base(path)
        self._resolved(path, "merge", by, tool=result.tool)
        return result

    def escalate(self, path: str, by: str, note: str | None) -> None:
        self._conflicted(path)
        self.manager.emit(EventType.CONFLICT_ESCALATED, path=path, by=by, note=note)

    def diff(self, path: str) -> str:
        """A unified diff from the last good content to what is on disk now (for the escalation modal)."""
        kept = self.kept.get(path)
        current = self._current(path) if self.running else None
        if kept is None:
            header = f"# no last good content of {path} was kept (it was under no lock)\n"
            return header + _unified(None, current, path)
        good = None if kept.good is ABSENT else self.store.get(kept.good)
        return _unified(good, current, path)

    def _write(self, path: str, content: bytes | None) -> None:
        target = self.manager.workspace / path
        if content is None:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.sprintdeck-tmp")
            temporary.write_bytes(content)
            os.replace(temporary, target)
        self.index.reconcile(path)  # our own write: the stat cache absorbs it, no change is judged

    def _resolved(self, path: str, how: str, by: str, **extra: Any) -> None:
        entry = self.index.entries.get(path)
        gone = entry is None
        self.manager.emit(
            EventType.CONFLICT_RESOLVED,
            path=path,
            resolution=how,
            by=by,
            status="clean",
            deleted=gone,
            checksum=None if gone else entry.checksum,
            size=None if gone else entry.size,
            mtime=None if gone else _iso_ns(entry.mtime_ns),
            **extra,
        )


# ---------------------------------------------------------------- helpers


def _holder(grant: Grant) -> dict[str, Any]:
    return {
        "agentId": grant.owner,
        "lockType": grant.mode,
        "resourceId": grant.resource_id,
        "lockId": grant.lock_id,
        "token": grant.token,
        "taskId": grant.task_id,
    }


def _iso_ns(mtime_ns: int | None) -> str | None:
    if mtime_ns is None:
        return None
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _unified(old: bytes | None, new: bytes | None, path: str) -> str:
    before = (old or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    after = (new or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    old_name = f"a/{path}" if old is not None else "/dev/null"
    new_name = f"b/{path}" if new is not None else "/dev/null"
    return "".join(difflib.unified_diff(before, after, old_name, new_name))
