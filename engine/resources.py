"""Resource ids: workspace-relative POSIX paths, or `name:`-prefixed non-file resources.

Kept apart from the lock manager because the reducer, the watcher and the dashboard all need to
ask "does a lock on A cover B?" without pulling in lock-manager state.
"""

from __future__ import annotations

import re

NAMED_RESOURCE = re.compile(r"^[a-z][a-z0-9_-]*:")


def is_named(resource_id: str) -> bool:
    """`db:schema` names a non-file resource, compared verbatim, never as a path."""
    return bool(NAMED_RESOURCE.match(resource_id))


def covers(ancestor: str, path: str) -> bool:
    """True when a lock on `ancestor` covers `path` (the same path or one below it)."""
    if ancestor == path:
        return True
    if is_named(ancestor) or is_named(path):
        return False
    return ancestor == "" or path.startswith(ancestor + "/")


def overlaps(a: str, b: str) -> bool:
    """Two resource ids overlap when either covers the other."""
    return covers(a, b) or covers(b, a)
