"""Paths whose write lock passed on from an agent declared dead while its commands may still run.

An agent that went silent (stopped, partitioned) is declared dead and its locks go to others, but
the commands it started may go on writing.  A change to such a path cannot be credited to whoever
holds the lock now: the fencing data says the lock changed hands, and nobody can tell which side
made the change.  So the path is *contested*, and a change to it is a conflict naming the
superseded attempt's lock (its token, task and agent), until the dead agent is heard from again
(an agent kills the commands of superseded attempts before it says anything, engine/agents/remote.py)
or its process is known to have exited (its commands die with it, engine/process_tree.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.lock_records import Grant
from engine.resources import is_named


class ContestedPaths:
    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}  # lock id -> a dead agent's write grant, still feared
        self._attempts: dict[str, int] = {}  # lock id -> the attempt it was taken for

    def __bool__(self) -> bool:
        return bool(self._grants)

    def contest(self, grants: Iterable[Grant], attempts: Mapping[str, int]) -> None:
        """A dead agent's grants, whose commands may still be running (its write locks count);
        `attempts`: task id -> the attempt that was superseded."""
        for grant in grants:
            if grant.mode != "read" and not is_named(grant.resource_id):
                self._grants[grant.lock_id] = grant
                if grant.task_id is not None and grant.task_id in attempts:
                    self._attempts[grant.lock_id] = attempts[grant.task_id]

    def settle(self, agent_id: str) -> None:
        """The agent is heard from again, or its process has exited: its old commands are over."""
        if not self._grants:
            return
        for lock_id in [lock_id for lock_id, grant in self._grants.items() if grant.owner == agent_id]:
            del self._grants[lock_id]
            self._attempts.pop(lock_id, None)

    def on(self, path: str) -> list[Grant]:
        """Contested grants on `path`, on a directory above it or below it, oldest first."""
        found = [g for g in self._grants.values() if _overlap(g.resource_id, path)]
        return sorted(found, key=lambda g: g.token)

    def detail(self, old: Grant, writers: list[str]) -> str:
        """Why the change is nobody's: the superseded attempt named, and who holds the path now."""
        attempt = self._attempts.get(old.lock_id)
        which = f"attempt {attempt} of task {old.task_id}" if attempt else f"task {old.task_id}"
        now = f"; {', '.join(writers)} holds it now" if writers else ""
        return (f"changed after {old.owner}'s write lock (token {old.token}) for {which} passed on when "
                f"{old.owner} was declared dead; its command may still be running{now}")


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
