"""Brokering help between agents: the seed's request_assistance and provide_assistance.

An agent that asks the manager for help (`request_assistance` to `sprint_manager`) does not need to
know who can give it.  The manager picks a helper - the agent named in the request, or else the
least loaded live agent that has the capability asked for (or every capability the request's task
requires) - and forwards the request to it in its own name, with `requester` set.  The helper
answers the manager (`provide_assistance`, a reply to the forwarded copy) and the manager relays
the answer to the asker as the reply to its request, naming the helper.  When nobody can help (no
such agent, or no answer within the asker's `responseTimeout`), the asker gets a
`provide_assistance` with `helped: false` saying why, so every request gets exactly one answer.

Agents may also ask one another directly (to an agent id or `broadcast`); those messages are
agent-to-agent traffic the manager only records.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from engine.mail import Post
from engine.models import AgentState, ProjectState
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, ProtocolError, RequestAssistanceMessage, make_message, reply_to

#: How long a helper has to answer when the asker gave no responseTimeout (seconds).
DEFAULT_WAIT = 10.0
#: The share of the asker's own responseTimeout given to the helper, so the manager's "nobody
#: answered" reaches the asker before the asker's own timeout fires.
WAIT_SHARE = 0.8
HELPING_STATUSES = frozenset({"ready", "busy", "waiting"})


@dataclass
class _Open:
    request: RequestAssistanceMessage
    helper: str
    wait: float  # seconds the helper was given
    timer: asyncio.TimerHandle


class AssistanceDesk:
    def __init__(self, state: ProjectState, post: Post) -> None:
        self._state = state
        self._post = post
        self._open: dict[str, _Open] = {}  # forwarded request id -> the asker's request

    def request(self, message: RequestAssistanceMessage) -> None:
        """Forward a request for help to a helper, or answer at once that nobody can help."""
        helper, why_not = self._helper(message)
        if helper is None:
            self._answer(message, False, why_not)
            return
        wait = DEFAULT_WAIT if message.response_timeout is None else message.response_timeout / 1000 * WAIT_SHARE
        payload = message.payload.model_copy(update={"requester": message.from_, "agent_id": helper})
        forwarded = make_message(MessageType.REQUEST_ASSISTANCE, MANAGER_ID, helper, payload, priority=message.priority,
                                 requires_response=True, response_timeout=max(1, round(wait * 1000)))
        timer = asyncio.get_running_loop().call_later(wait, self._expired, forwarded.id)
        self._open[forwarded.id] = _Open(message, helper, wait, timer)
        self._post(forwarded)

    def answered(self, message: IPCMessage) -> bool:
        """A helper's reply (`provide_assistance`, or its `agent_error`) to a forwarded request:
        relayed to the asker.  False when `message` answers no open request of its sender."""
        entry = self._open.get(message.correlation_id or "")
        if entry is None or entry.helper != message.from_:
            return False
        del self._open[message.correlation_id or ""]
        entry.timer.cancel()
        if message.type == MessageType.PROVIDE_ASSISTANCE:
            helped = message.payload.helped is not False
            self._answer(entry.request, helped, message.payload.details, helper=entry.helper)
        else:
            self._answer(entry.request, False, f"{entry.helper} could not help: {message.payload.error}", helper=entry.helper)
        return True

    def _expired(self, forwarded_id: str) -> None:
        entry = self._open.pop(forwarded_id, None)
        if entry is not None:
            self._answer(entry.request, False, f"{entry.helper} gave no answer within {entry.wait * 1000:.0f} ms",
                         helper=entry.helper)

    def _answer(self, request: RequestAssistanceMessage, helped: bool, details: str, helper: str | None = None) -> None:
        payload = {"topic": request.payload.topic, "taskId": request.payload.task_id, "details": details,
                   "agentId": helper, "helped": helped}
        self._post(reply_to(request, MessageType.PROVIDE_ASSISTANCE, payload))

    # ------------------------------------------------------------ choosing a helper

    def _helper(self, message: RequestAssistanceMessage) -> tuple[str | None, str]:
        """The agent to ask, or None and the reason nobody can help."""
        payload, asker = message.payload, message.from_
        if payload.agent_id is not None:
            return self._named(payload.agent_id, asker)
        needs = self._needs(message)
        candidates = [a for a in self._state.agents.values()
                      if a.id != asker and a.status in HELPING_STATUSES and needs <= _skills(a)]
        if not candidates:
            wanted = f" with {', '.join(sorted(needs))}" if needs else ""
            return None, f"no live agent{wanted} other than {asker} can help now"
        return min(candidates, key=lambda a: (len(a.current_tasks), a.id)).id, ""

    def _named(self, agent_id: str, asker: str) -> tuple[str | None, str]:
        agent = self._state.agents.get(agent_id)
        if agent is None:
            known = ", ".join(sorted(a for a in self._state.agents if a != asker)) or "none"
            raise ProtocolError("payload.agentId", f"no agent {agent_id!r} in this sprint (the others: {known})")
        if agent_id == asker:
            raise ProtocolError("payload.agentId", "that is the asker itself; name another agent or leave it out")
        if agent.status not in HELPING_STATUSES:
            return None, f"{agent_id} is {agent.status} and cannot help now"
        return agent_id, ""

    def _needs(self, message: RequestAssistanceMessage) -> set[str]:
        payload = message.payload
        if payload.capability is not None:
            return {payload.capability}
        task = self._state.tasks.get(payload.task_id or "")
        if payload.task_id is not None and task is None:
            raise ProtocolError("payload.taskId", f"unknown task {payload.task_id!r}")
        return set(task.requires) if task is not None else set()


def _skills(agent: AgentState) -> set[str]:
    return set(agent.capabilities) | set(agent.specializations)
