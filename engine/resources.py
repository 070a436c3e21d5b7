"""Resource ids: workspace-relative POSIX paths, or `name:`-prefixed non-file resources.

The one place that says what a resource id is: plans validate with it, the lock manager
normalises and compares with it, the reducer, the watcher and the simulated agents ask it whether
a lock on A covers B.  (There were three slightly different copies; a plan could accept as a
named resource something the lock manager then treated as a file path.)
"""

from __future__ import annotations

import re
from functools import lru_cache

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
        raise ResourceError(f"resource id {resource_id!r} is not a string")
    return _normalise(resource_id)


@lru_cache(maxsize=16384)
def _normalise(resource_id: str) -> str:
    # Cached: agents ask for the same few hundred paths over and over.
    if not resource_id.strip():
        raise ResourceError(f"resource id {resource_id!r} is empty")
    if "\x00" in resource_id:
        raise ResourceError(f"resource id {resource_id!r} contains a NUL character")
    if _DRIVE.match(resource_id) or resource_id[0] in "/\\":
        raise ResourceError(f"resource {resource_id!r} is an absolute path; use a path inside the workspace")
    prefix = NAMED_RESOURCE.match(resource_id)
    if prefix:
        if prefix.end() == len(resource_id):
            raise ResourceError(f"resource id {resource_id!r} names nothing after the {prefix.group()!r} prefix")
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
            raise ResourceError(f"resource {resource_id!r} leaves the workspace")
    if not parts:
        raise ResourceError(f"resource id {resource_id!r} names the workspace root itself, not a resource in it")
    path = "/".join(parts)
    if NAMED_RESOURCE.match(path):
        # Otherwise `./db:x` would silently become the named resource `db:x`.
        raise ResourceError(f"resource id {resource_id!r} normalises to {path!r}, which reads as a named resource")
    return path


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
