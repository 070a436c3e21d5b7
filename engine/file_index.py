"""The stat cache over every file of the workspace, and the checksums and reads it is built on.

`FileIndex` is the stat cache, as git's index is: per path the size, mtime and inode seen when the
content was last hashed, so a rescan re-hashes only what changed (a 10,000-file tree rescans in a
fraction of a second).  Like git it distrusts "racily clean" entries: a file hashed within one
timestamp tick of its mtime may be rewritten with the same size inside that tick, so such an entry
is re-hashed at its next notification instead of trusted.  The tick is the file system's own: ext4
stamps in nanoseconds, ext3 and HFS+ in seconds, FAT in two seconds, so `FileIndex` measures it on
the workspace's file system (`timestamp_step_ns`) and distrusts an entry for twice that, never for
less than `RACY_NS`.

A caller that is about to keep what it just settled (the sprint manager keeping a lock's base
content) wraps the reconcile in `FileIndex.remembering()`: the bytes of every regular file the
index reads inside the block are handed back with their checksum, so the same file is not read and
hashed a second time a moment later.  Nothing is remembered outside such a block, so the index
never answers with stale bytes.  `FileIndex.clean_checksum` says when an entry just reconciled can
stand for the content without any read (a regular file, no error, not racy).

What changed comes out as `Observation`s (changed, deleted, unreadable; `pair_renames` makes a
deletion and a creation of the same content a rename).  Paths the ignore rules leave out
(engine/ignore_rules.py) are not indexed, nor anything reached through a symlink: a symlink is
recorded as a link (its checksum is that of its target text, as git stores it) and never followed,
so nothing outside the workspace is read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import xxhash

from engine.ignore_rules import IgnoreRules, join_relative

# xxh3-128: 8.5 GB/s here against 1.7 GB/s for sha1 and 0.44 GB/s for blake2b (benchmarks/
# bench_watch.py), and ~1 µs instead of 12-43 µs for a 20 KB source file.  The checksum detects
# change, it does not defend against an adversary, so a fast non-cryptographic 128-bit hash is the
# right tool.  Checksums name their algorithm, so agents without xxhash (the stdlib-only hook) can
# report `sha256:<hex>` and the manager compares with that algorithm instead.
CHECKSUM_ALGORITHM = "xxh3"
READ_WHOLE_LIMIT = 8 << 20  # files up to this size are read in one call (content kept for snapshots)
CHUNK = 1 << 20
RACY_NS = 50_000_000  # an mtime this close to the hashing time is never trusted, whatever the tick
COARSEST_STEP_NS = 2_000_000_000  # FAT's two seconds: assumed when the tick cannot be measured
PROBE_SECONDS = 0.025  # how long `timestamp_step_ns` may write before it gives up measuring
PROBE_WRITES = 16
REMEMBER_LIMIT = 64 << 20  # bytes one `remembering` block holds at most (the rest is read again)

ObservationKind = Literal["changed", "deleted", "unreadable"]


# ---------------------------------------------------------------- checksums and reads


def checksum_bytes(data: bytes) -> str:
    """The checksum content is named by, here and in the manager's store (see CHECKSUM_ALGORITHM)."""
    return f"{CHECKSUM_ALGORITHM}:{xxhash.xxh3_128_hexdigest(data)}"


def checksum_with(algorithm: str, data: bytes) -> str:
    """The checksum of `data` in a reporter's algorithm (`xxh3`, or any hashlib name)."""
    if algorithm == CHECKSUM_ALGORITHM:
        return checksum_bytes(data)
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def open_regular(path: str | os.PathLike[str]) -> tuple[int, int]:
    """A read-only descriptor of `path` and the size of what it opened, refused unless it is a
    regular file right now.

    Callers lstat first, but the path can be swapped between that and the open: a named pipe put
    there would block the manager in `open` until some writer came.  O_NONBLOCK makes that open
    return at once, O_NOFOLLOW refuses a symlink put there, and the fstat judges what was opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"not a regular file ({_kind(info.st_mode)}); not read", os.fspath(path))
    return fd, info.st_size


def read_expected(fd: int, size: int) -> bytes:
    """The content of an open regular file of `size` bytes, in one read when it still has that size.

    `FileIO.readall` asks fstat and lseek for the size and reads once more to find the end: three
    more system calls per file, and in a watched workspace every file the manager touches is slow
    to touch.  Asking for one byte more than expected tells the end in the same call; a file that
    grew or shrank since (or a short read) is read on to its end.
    """
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    chunks = [data]
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def read_and_hash(path: str | os.PathLike[str], size: int) -> tuple[str, bytes | None]:
    """The file's checksum, and its content when it is small enough to keep in one read."""
    fd, opened_size = open_regular(path)
    try:
        if max(size, opened_size) <= READ_WHOLE_LIMIT:
            data = read_expected(fd, opened_size)
            return checksum_bytes(data), data
        hasher = xxhash.xxh3_128()
        while chunk := os.read(fd, CHUNK):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}", None


def stamp_step(stamps: list[int]) -> int | None:
    """The smallest step between successive distinct mtimes, or None when they never moved.

    Written back to back, a coarse file system repeats a stamp until its tick passes, so the step
    is the tick; a fine one moves on every write, so the tick is no larger than the step.
    """
    steps = [later - earlier for earlier, later in zip(stamps, stamps[1:]) if later > earlier]
    return min(steps) if steps else None


def timestamp_step_ns(directory: str | os.PathLike[str]) -> int:
    """How far apart two writes must be for `directory`'s file system to stamp different mtimes.

    Measured with write-then-fstat pairs on an unnamed O_TMPFILE there (nothing appears in the
    tree, so no watcher sees it).  A file system where that cannot be done, or whose stamp did not
    move within PROBE_SECONDS, is taken to be as coarse as FAT.
    """
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except (AttributeError, OSError):  # not Linux, or a file system without O_TMPFILE
        return COARSEST_STEP_NS
    stamps: list[int] = []
    try:
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            os.write(fd, b"\n")
            stamps.append(os.fstat(fd).st_mtime_ns)
            if len(stamps) >= PROBE_WRITES and stamp_step(stamps) is not None:
                break
    except OSError:
        return COARSEST_STEP_NS
    finally:
        os.close(fd)
    return stamp_step(stamps) or COARSEST_STEP_NS


# ---------------------------------------------------------------- what the index holds and reports


@dataclass(slots=True)
class Entry:
    """What the stat cache knows of one path."""

    size: int
    mtime_ns: int
    ino: int
    checksum: str
    racy: bool = False
    error: str | None = None
    link: bool = False  # a symlink: `checksum` is that of b"symlink:" + target, not of the target text


@dataclass(frozen=True)
class Observation:
    """One thing the watcher saw; the manager decides what it means."""

    path: str
    kind: ObservationKind
    checksum: str = ""
    size: int | None = None
    mtime_ns: int | None = None
    created: bool = False
    renamed_from: str | None = None
    error: str | None = None
    content: bytes | None = field(default=None, repr=False, compare=False)
    previous: str = ""  # checksum before the change ("" when new)
    link: bool = field(default=False, compare=False)  # a symlink: `content` is its target text

    @property
    def content_key(self) -> str | None:
        """`checksum` when it is the checksum of `content` itself (a regular file read whole), so
        whoever stores the content need not hash it again; None otherwise (a link's checksum
        covers a prefix, a large file's content is not carried)."""
        return self.checksum if self.content is not None and not self.link else None


# ---------------------------------------------------------------- the stat cache


class FileIndex:
    """Path -> Entry for every file under `root`; `scan` and `reconcile` report what changed."""

    def __init__(self, root: Path, *, ignore: Iterable[str] = (), racy_ns: int | None = None) -> None:
        self.root = Path(root)
        # An entry hashed closer than this to its mtime is re-read at its next reconcile.
        self.racy_ns = racy_ns if racy_ns is not None else max(RACY_NS, 2 * timestamp_step_ns(root))
        self._root = os.fspath(self.root)  # string joins: a Path per call costs more than the lstat
        self.real_root = os.path.realpath(self.root)
        self.rules = IgnoreRules(self.root, ignore)
        self.entries: dict[str, Entry] = {}
        self.hashed = 0  # files read and hashed (the stat cache's misses), for tests and benchmarks
        self._fresh: dict[str, tuple[str, bytes]] | None = None  # see `remembering`
        self._fresh_room = 0
        self._dirs: set[str] = set()  # every directory an entry was ever added below (see `below`)

    def relative(self, absolute: str) -> str | None:
        """The POSIX path of `absolute` below the root, or None when it is the root or outside."""
        rel = os.path.relpath(absolute, self.root)
        if rel == "." or rel.startswith(".."):
            return None
        return rel.replace(os.sep, "/")

    def scan(self) -> list[Observation]:
        """Walk the whole tree; every change since the last scan (everything, the first time)."""
        return self._reconcile_dir("")

    def reconcile(self, rel: str) -> list[Observation]:
        """Bring one path (file, directory, or gone) up to date; what changed."""
        absolute = os.path.join(self._root, rel)
        if not self._inside(rel):
            return self._forget(rel)  # reached through a symlink: not ours to read
        try:
            info = os.lstat(absolute)
        except FileNotFoundError:
            return self._forget(rel)
        except OSError as exc:
            return self._unreadable(rel, _reason(exc))
        if stat.S_ISDIR(info.st_mode):
            if self.rules.ignored(rel, True):
                return []
            gone = self._forget(rel) if rel in self.entries else []  # a file replaced by a directory
            return gone + self._reconcile_dir(rel)
        gone = self._forget(rel, keep_self=True)  # a directory replaced by a file
        if self.rules.ignored(rel, False):
            return gone
        observed = self._observe(rel, absolute, info)
        return gone + ([observed] if observed else [])

    def read(self, rel: str) -> bytes:
        """The current bytes of a file (a symlink's target text), for snapshots and merges.

        A special file raises OSError instead of being opened: a named pipe would block the
        manager until some writer came, a device could be read without end.
        """
        absolute = os.path.join(self._root, rel)
        if not self._inside(rel):
            raise OSError(f"{rel} is reached through a symlink")
        if stat.S_ISLNK(os.lstat(absolute).st_mode):
            return os.readlink(absolute).encode()
        fd, size = open_regular(absolute)  # refuses a pipe or device
        try:
            return read_expected(fd, size)
        finally:
            os.close(fd)

    @contextmanager
    def remembering(self, limit: int = REMEMBER_LIMIT) -> Iterator[dict[str, tuple[str, bytes]]]:
        """Collect, for the length of the block, `path -> (checksum, bytes)` of every regular file
        that `reconcile` or `scan` reads whole, changed or not (at most `limit` bytes in all).

        A settle re-hashes racy entries and discards the bytes of those found unchanged; a caller
        that keeps the content right after (a lock's base) takes it from here instead of reading
        and hashing the file again.  The dict stays valid after the block but stops growing, and
        each pair is consistent by construction (the checksum is of those very bytes).
        """
        outer = self._fresh, self._fresh_room
        self._fresh, self._fresh_room = {}, limit
        try:
            yield self._fresh
        finally:
            self._fresh, self._fresh_room = outer

    def below(self, rel_dir: str) -> list[str]:
        """The entries on paths below directory `rel_dir`.

        Deciding that a path never indexed (a file about to be created, a lock on a new path)
        has nothing below it would otherwise cost a pass over every entry; `_dirs` answers it.
        It only grows, so it may name a directory with nothing left below: then the pass is made.
        """
        if rel_dir not in self._dirs:
            return []
        prefix = rel_dir + "/"
        return [p for p in self.entries if p.startswith(prefix)]

    def clean_checksum(self, rel: str) -> str | None:
        """The checksum of `rel`'s content when its entry can stand for it without a read: a
        regular file, readable, and not racy.

        Only meaningful for a path reconciled a moment ago (its stat was compared then): the same
        trust a rescan puts in an unchanged stat, no more.
        """
        entry = self.entries.get(rel)
        if entry is None or entry.error is not None or entry.racy or entry.link:
            return None
        return entry.checksum

    # ------------------------------------------------------------ internals

    def _inside(self, rel: str) -> bool:
        """Whether `rel`'s directory is reached without going through a symlink (one lstat per
        component below the root): the watcher follows linked directories, the index does not."""
        parts = rel.split("/")[:-1]
        current = self._root
        for part in parts:
            current = os.path.join(current, part)
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    # Links are recorded, never followed (the scan does not either): a file
                    # inside is watched under its own name, and one name is one resource.
                    return False
            except OSError:
                return True  # a missing directory: the caller's own lstat reports it
        return True

    def _walk(self, rel_dir: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        stack = [rel_dir]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(self.root / current if current else self.root) as listing:
                    items = list(listing)
            except OSError:
                continue
            for item in items:
                rel = join_relative(current, item.name)
                is_dir = item.is_dir(follow_symlinks=False)
                if self.rules.ignored(rel, is_dir):
                    continue
                if is_dir:
                    stack.append(rel)
                else:
                    yield rel, item

    def _reconcile_dir(self, rel_dir: str) -> list[Observation]:
        seen: set[str] = set()
        changes: list[Observation] = []
        for rel, item in self._walk(rel_dir):
            seen.add(rel)
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                seen.discard(rel)
                continue
            except OSError as exc:
                changes += self._unreadable(rel, _reason(exc))
                continue
            observed = self._observe(rel, os.path.join(self._root, rel), info)
            if observed is not None:
                changes.append(observed)
        known = self.below(rel_dir) if rel_dir else list(self.entries)
        for rel in [p for p in known if p not in seen]:
            changes += self._forget(rel)
        return changes

    def _observe(self, rel: str, absolute: str, info: os.stat_result) -> Observation | None:
        """Re-hash only when size, mtime or inode moved (or the cached entry was racy)."""
        known = self.entries.get(rel)
        if (
            known is not None
            and known.error is None
            and not known.racy
            and (known.size, known.mtime_ns, known.ino) == (info.st_size, info.st_mtime_ns, info.st_ino)
        ):
            return None
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            found = self._unreadable(rel, f"not a regular file ({_kind(info.st_mode)}); not read")
            return found[0] if found else None
        link = stat.S_ISLNK(info.st_mode)
        content: bytes | None
        try:
            if link:
                content = os.readlink(absolute).encode()
                checksum = checksum_bytes(b"symlink:" + content)
            else:
                checksum, content = read_and_hash(absolute, info.st_size)
        except FileNotFoundError:
            return None  # gone between stat and open: its deletion notice follows
        except OSError as exc:
            found = self._unreadable(rel, _reason(exc))
            return found[0] if found else None
        self.hashed += 1
        racy = time.time_ns() - info.st_mtime_ns < self.racy_ns
        self._set(rel, Entry(info.st_size, info.st_mtime_ns, info.st_ino, checksum, racy, None, link))
        if not link:
            self._remember(rel, checksum, content)
        if known is not None and known.error is None and known.checksum == checksum:
            return None  # touched, not changed
        return Observation(
            rel,
            "changed",
            checksum=checksum,
            size=info.st_size,
            mtime_ns=info.st_mtime_ns,
            created=known is None or known.error is not None and not known.checksum,
            content=content,
            previous=known.checksum if known else "",
            link=link,
        )

    def _set(self, rel: str, entry: Entry) -> None:
        """Record an entry; a new path's directories join `_dirs` (ancestors of a member are members)."""
        if rel not in self.entries:
            parent = rel.rpartition("/")[0]
            while parent and parent not in self._dirs:
                self._dirs.add(parent)
                parent = parent.rpartition("/")[0]
        self.entries[rel] = entry

    def _remember(self, rel: str, checksum: str, content: bytes | None) -> None:
        """Hand a regular file's bytes to the open `remembering` block, if any and within its limit."""
        if self._fresh is None or content is None or len(content) > self._fresh_room:
            return
        self._fresh[rel] = (checksum, content)
        self._fresh_room -= len(content)

    def _unreadable(self, rel: str, reason: str) -> list[Observation]:
        """Record why a path cannot be read; report it once (again only if the reason changes)."""
        known = self.entries.get(rel)
        if known is not None and known.error == reason:
            return []
        checksum = known.checksum if known else ""
        self._set(rel, Entry(-1, -1, -1, checksum, False, reason))
        return [Observation(rel, "unreadable", checksum=checksum, error=reason, created=known is None)]

    def _forget(self, rel: str, *, keep_self: bool = False) -> list[Observation]:
        """Deleted: the path itself, or every entry below it when it was a directory."""
        if rel in self.entries:
            if keep_self:
                return []  # a known file has nothing below it
            known = self.entries.pop(rel)
            return [Observation(rel, "deleted", previous=known.checksum)]
        return [Observation(p, "deleted", previous=self.entries.pop(p).checksum) for p in self.below(rel)]


def _reason(exc: OSError) -> str:
    return f"{exc.strerror or exc.__class__.__name__} (errno {exc.errno})" if exc.errno else str(exc)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def pair_renames(observations: list[Observation]) -> list[Observation]:
    """A deletion and a creation of the same content in one batch is a rename (watchfiles reports two events)."""
    deleted = {o.previous: o for o in observations if o.kind == "deleted" and o.previous}
    if not deleted:
        return observations
    paired: set[str] = set()
    result: list[Observation] = []
    for obs in observations:
        source = deleted.get(obs.checksum) if obs.kind == "changed" and obs.created else None
        if source is not None and source.path not in paired:
            paired.add(source.path)
            result.append(_renamed(obs, source.path))
        else:
            result.append(obs)
    return [o for o in result if not (o.kind == "deleted" and o.path in paired)]


def _renamed(obs: Observation, source: str) -> Observation:
    return Observation(
        obs.path,
        "changed",
        checksum=obs.checksum,
        size=obs.size,
        mtime_ns=obs.mtime_ns,
        created=True,
        renamed_from=source,
        content=obs.content,
        previous=obs.checksum,
        link=obs.link,
    )
