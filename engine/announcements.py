"""The manager's broadcast_info: sprint-level events told to every agent as they happen.

The sprint started, paused or resumed; an agent joined or died (its work goes back to the
queue, which its peers may want to know before they ask it for help).  Each is one broadcast
message, journaled like every message.  The sprint's end is told to each connection by the
transport as it closes (`sprint_finished`), after the journal's final record.
"""

from __future__ import annotations

from typing import Any

from engine.events import AgentDead, Event, SprintPaused, SprintResumed
from engine.mail import Post
from engine.plan import Plan
from engine.protocol import AGENT_DIED, AGENT_JOINED, BROADCAST, MANAGER_ID, SPRINT_PAUSED, SPRINT_RESUMED, SPRINT_STARTED, MessageType, make_message
from engine.recorder import Recorder


class Announcements:
    def __init__(self, recorder: Recorder, post: Post) -> None:
        self._post = post
        recorder.subscribe(self._on_event)

    def announce(self, info: str, **data: Any) -> None:
        self._post(make_message(MessageType.BROADCAST_INFO, MANAGER_ID, BROADCAST, {"info": info, "data": data}))

    def sprint_started(self, plan: Plan) -> None:
        """Told by the manager once its first scan is done (a listener on the start event would
        race the scan's record for its place in the journal)."""
        self.announce(SPRINT_STARTED, sprint=plan.sprint, tasks=len(plan.tasks), agents=[a.id for a in plan.agents])

    def agent_joined(self, agent_id: str, capabilities: list[str]) -> None:
        self.announce(AGENT_JOINED, agentId=agent_id, capabilities=capabilities)

    def _on_event(self, event: Event) -> None:
        body = event.body
        kind = type(body)
        if kind not in _ANNOUNCED:  # every event of the sprint passes here: one set lookup for most
            return
        if isinstance(body, SprintPaused):
            self.announce(SPRINT_PAUSED)
        elif isinstance(body, SprintResumed):
            self.announce(SPRINT_RESUMED)
        elif isinstance(body, AgentDead):
            self.announce(AGENT_DIED, agentId=body.agent_id, reason=body.reason, requeuedTasks=body.requeued_tasks)


_ANNOUNCED: frozenset[type] = frozenset({SprintPaused, SprintResumed, AgentDead})
