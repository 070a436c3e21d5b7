"""Which rows a batch of engine events touched, so panes update those rows and nothing else.

The set itself, without the event classes: panes and the dashboard's first frame (drawn before the
engine and pydantic are imported) use it; `widgets/event_changes.py` reads it off the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Changes:
    tasks: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    locks: bool = False
    everything: bool = False

    def __bool__(self) -> bool:
        return bool(self.tasks or self.agents or self.files or self.locks or self.everything)
