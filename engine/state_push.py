"""State pushed to the agents that ask for it: the seed's state_sync, kept current.

An agent that sends `state_request` with `subscribe: true` gets the answer, and from then on a
`state_sync` of the sections it asked for whenever the state has changed - coalesced, so that at
most one push per `PUSH_INTERVAL` goes to each subscriber whatever the rate of change (a sprint
of thousands of events a second pushes a few times a second, each push the latest version).
`subscribe: false`, its death or its leaving ends the pushes.

The record of a delivered message is itself an event, so message records do not count as a
change (a push would otherwise cause the next one, forever).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.events import AgentDead, Event, MessageRecorded
from engine.mail import Post
from engine.models import ProjectState
from engine.protocol import MANAGER_ID, MessageType, make_message
from engine.recorder import Recorder

PUSH_INTERVAL = 0.2  # seconds: the most often one subscriber is sent the state


def state_sections(state: ProjectState, sections: Sequence[str]) -> dict[str, Any]:
    """The state (or the sections asked for, always with `version`) as a state_sync carries it.

    "conflicts" alone is what a hook asks after each tool call: the files in conflict only, small
    whatever the repository's size.
    """
    if list(sections) == ["conflicts"]:
        files = {path: f for path, f in state.files.items() if f.status == "conflict"}
        return {"version": state.version, "conflicts": {p: f.model_dump(mode="json") for p, f in files.items()}}
    if not sections:
        return state.model_dump(mode="json")
    wanted = {key for key in sections if key != "conflicts"} | {"version"}
    return state.model_dump(mode="json", include=wanted)


@dataclass
class _Subscriber:
    sections: list[str]
    sent: int  # the version it was last sent


class StatePush:
    def __init__(self, recorder: Recorder, post: Post, interval: float = PUSH_INTERVAL) -> None:
        self._state = recorder.state
        self._post = post
        self._interval = interval
        self._subscribers: dict[str, _Subscriber] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_push = float("-inf")
        recorder.subscribe(self._changed)

    def subscribe(self, agent_id: str, sections: Sequence[str], version: int) -> None:
        """Push `sections` to `agent_id` after every change past `version` (what it was just sent)."""
        self._subscribers[agent_id] = _Subscriber(list(sections), version)

    def unsubscribe(self, agent_id: str) -> None:
        self._subscribers.pop(agent_id, None)

    @property
    def subscribers(self) -> list[str]:
        return sorted(self._subscribers)

    def _changed(self, event: Event) -> None:
        if not self._subscribers:  # every event of the sprint passes here: nobody listening costs one test
            return
        body = event.body
        if isinstance(body, AgentDead):
            self.unsubscribe(body.agent_id)
        if self._timer is not None or isinstance(body, MessageRecorded) or not self._subscribers:
            return
        loop = asyncio.get_running_loop()  # the loop's clock: the rate is real time, whatever the manager's clock
        self._timer = loop.call_later(max(0.0, self._last_push + self._interval - loop.time()), self._push)

    def _push(self) -> None:
        self._timer = None
        self._last_push = asyncio.get_running_loop().time()
        version = self._state.version
        for agent_id, subscriber in self._subscribers.items():
            if version > subscriber.sent:
                subscriber.sent = version
                payload = {"version": version, "state": state_sections(self._state, subscriber.sections)}
                self._post(make_message(MessageType.STATE_SYNC, MANAGER_ID, agent_id, payload, priority="low"))
