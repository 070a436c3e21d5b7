"""Resource ids: workspace-relative POSIX paths, or `name:`-prefixed non-file resources.

The one place that says what a resource id is: plans validate with it, the lock manager
normalises and compares with it, the reducer, the watcher and the simulated agents ask it whether
a lock on A covers B.  (There were three slightly different copies; a plan could accept as a
named resource something the lock manager then treated as a file path.)

Two steps make an id canonical.  `normalise_resource` is lexical and needs no workspace:
separators, `.`/`..`, absolute paths, control characters, length.  `canonical_resource` then
resolves the path through the symlinks below the workspace root, so that `alias.txt` (a link to
`a.txt`) and `a.txt` are one lock, reported under the file's real name, and a path that leads out
of the workspace (`etc_link/passwd`, `pw_link` -> /etc/passwd) is refused, naming where it leads.
The lock desk applies it to every id that enters (an agent's request, a task's plan resources, a
file report), so the journal and replay only ever see canonical ids.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path

from engine.identifiers import shown, text_problem

MAX_RESOURCE_LENGTH = 4096  # Linux's PATH_MAX; a named resource gets the same room

# At least two characters before the colon, so that `c:` is never a Windows drive taken for a name.
NAMED_RESOURCE = re.compile(r"[a-z][a-z0-9_-]+:")
_DRIVE = re.compile(r"[A-Za-z]:[/\\]")


class LockError(ValueError):
    """A request the lock manager refuses to consider at all (bad id, not the holder, ...)."""


class ResourceError(LockError):
    """A resource id that names nothing valid inside the workspace."""


def is_named(resource_id: str) -> bool:
    """`db:schema` names a non-file resource, compared verbatim, never as a path."""
    return bool(NAMED_RESOURCE.match(resource_id))


def normalise_resource(resource_id: str) -> str:
    """The canonical id, so that `src/./a`, `src\\a` and `src/a/` name one lock."""
    if not isinstance(resource_id, str):
        raise ResourceError(f"a resource id must be a string, not {type(resource_id).__name__}")
    return _normalise(resource_id)


@lru_cache(maxsize=16384)
def _normalise(resource_id: str) -> str:
    # Cached: agents ask for the same few hundred paths over and over.
    if not resource_id.strip():
        raise ResourceError(f"resource id {shown(resource_id)} is empty")
    problem = text_problem(resource_id, max_length=MAX_RESOURCE_LENGTH)
    if problem is not None:
        raise ResourceError(f"resource id {shown(resource_id)} {problem}")
    if _DRIVE.match(resource_id) or resource_id[0] in "/\\":
        raise ResourceError(f"resource {shown(resource_id)} is an absolute path; use a path inside the workspace")
    prefix = NAMED_RESOURCE.match(resource_id)
    if prefix:
        if prefix.end() == len(resource_id):
            raise ResourceError(f"resource id {shown(resource_id)} names nothing after the {prefix.group()!r} prefix")
        return resource_id
    return _normalise_path(resource_id)


def _normalise_path(resource_id: str) -> str:
    parts: list[str] = []
    for part in resource_id.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise ResourceError(f"resource {shown(resource_id)} leaves the workspace")
    if not parts:
        raise ResourceError(f"resource id {shown(resource_id)} names the workspace root itself, not a resource in it")
    path = "/".join(parts)
    if NAMED_RESOURCE.match(path):
        # Otherwise `./db:x` would silently become the named resource `db:x`.
        raise ResourceError(f"resource id {shown(resource_id)} normalises to {path!r}, which reads as a named resource")
    return path


def canonical_resource(resource_id: str, root: str) -> str:
    """The id of `resource_id` in the workspace whose real path is `root`: normalised, then
    resolved through symlinks.  A path below a symlink names what the link leads to; a part that
    does not exist yet is kept as written (a lock may be taken on a file before it is created).
    Raises ResourceError when the path leads out of the workspace or to its root."""
    path = normalise_resource(resource_id)
    if is_named(path) or not _through_link(root, path):
        return path
    real = os.path.realpath(os.path.join(root, path))
    inside = root if root.endswith(os.sep) else root + os.sep
    if real == root:
        raise ResourceError(f"resource {shown(resource_id)} leads to the workspace root itself through a symlink")
    if not real.startswith(inside):
        raise ResourceError(f"resource {shown(resource_id)} leads to {shown(real, 200)} through a symlink, "
                            f"outside the workspace {shown(root, 200)}")
    canonical = real[len(inside):].replace(os.sep, "/")
    if canonical == path:
        return path
    try:
        return normalise_resource(canonical)
    except ResourceError as exc:
        raise ResourceError(f"resource {shown(resource_id)} leads through a symlink to {shown(canonical, 200)}: {exc}") from None


def _through_link(root: str, path: str) -> bool:
    """Whether a component of `path` below `root` is a symlink: one lstat each, stopping at the
    first that does not exist (the common case costs a few microseconds; `realpath` from `/` is
    paid only when there is a link to resolve)."""
    current = root
    for part in path.split("/"):
        current = os.path.join(current, part)
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return True
        except OSError:
            return False  # nothing below a missing component can be a link yet
    return False


def resource_ids_in(workspace: str | os.PathLike[str]) -> Callable[[str], str]:
    """`canonical_resource` for one workspace (its real path taken once)."""
    return partial(canonical_resource, root=os.path.realpath(Path(workspace)))


@lru_cache(maxsize=16384)
def ancestors(resource_id: str) -> tuple[str, ...]:
    """The directories above a normalised path (`a/b/c` -> `a`, `a/b`); none for a `name:` id."""
    if is_named(resource_id):
        return ()
    parts = resource_id.split("/")
    return tuple("/".join(parts[:i]) for i in range(1, len(parts)))


def covers(ancestor: str, path: str) -> bool:
    """True when a lock on `ancestor` covers `path` (the same path or one below it)."""
    return ancestor == path or ancestor in ancestors(path)


def overlaps(a: str, b: str) -> bool:
    """Two normalised ids overlap when either covers the other: such locks can conflict."""
    return covers(a, b) or covers(b, a)
