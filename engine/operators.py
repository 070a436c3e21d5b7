"""Operator actions: what a person at the dashboard (or the command line) may do to a sprint.

Each action is checked first (an action that cannot apply raises `OperatorError` saying why, and
changes nothing), then recorded as an `operator_action` naming the operator, and then carried out
through the same paths agents' messages take, so a replay tells the whole story.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.attempts import Attempts
from engine.conflicts import FileGuard
from engine.resolutions import ResolutionError
from engine.events import (
    Absent,
    OperatorAction,
    SprintPaused,
    SprintResumed,
    TaskPriority,
    TaskReady,
    TaskReset,
    AgentStatus,
)
from engine.lockdesk import LockDesk
from engine.merge import MergeResult
from engine.models import TERMINAL_TASK_STATUSES, TaskState
from engine.recorder import Recorder
from engine.scheduler import PLACEABLE_AGENT_STATUSES, Placement, Scheduler

OPERATOR_ID = "operator"
RESOLUTIONS = ("accept", "revert", "merge", "escalate")


class OperatorError(ValueError):
    """An operator action that cannot apply; the message says why, and nothing changed."""


@dataclass(frozen=True)
class ReassignTarget:
    """An agent able to do a task, and why it cannot take it now (`refusal` None: it can).

    `refusal` reads after the agent's name: "wobbly is full: 1 of 1 tasks running (...)"."""

    agent_id: str
    refusal: str | None


class Operators:
    def __init__(self, recorder: Recorder, attempts: Attempts, desk: LockDesk, files: FileGuard,
                 scheduler: Scheduler) -> None:
        self._state = recorder.state
        self._emit = recorder.emit
        self._attempts = attempts
        self._desk = desk
        self._files = files
        self._scheduler = scheduler
        self.by = OPERATOR_ID  # who the recorded actions name: a watcher's operator while it acts

    @contextmanager
    def acting(self, name: str) -> Iterator[None]:
        """Record the actions taken inside as `name`'s (an operator attached with `sprintdeck watch`)."""
        self.by, before = name, self.by
        try:
            yield
        finally:
            self.by = before

    def _record(self, action: OperatorAction) -> None:
        self._emit(action)

    def _task(self, task_id: str) -> TaskState:
        task = self._state.tasks.get(task_id)
        if task is None:
            raise OperatorError(f"unknown task {task_id!r}")
        return task

    # ------------------------------------------------------------ tasks

    def check_reassign(self, task_id: str) -> list[ReassignTarget]:
        """The agents that could take `task_id` instead of its owner, each with why it cannot now;
        OperatorError saying why when the task cannot move at all or no agent can take it now."""
        task = self._movable(task_id)
        owners = set(task.owners) if task.in_flight else set()
        targets = [ReassignTarget(a, self._refusal(a)) for a in self._scheduler.capable_agents(task_id) if a not in owners]
        if not targets:
            raise OperatorError(self._nobody_else(task, owners))
        if all(t.refusal for t in targets):
            reasons = "; ".join(f"{t.agent_id} is {t.refusal}" for t in targets)
            raise OperatorError(f"no agent can take task {task_id} now: {reasons}")
        return targets

    def _movable(self, task_id: str) -> TaskState:
        """The task, or OperatorError when it cannot be reassigned whoever the agent."""
        task = self._task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is {task.status}; only unfinished tasks can be reassigned")
        if task.coordination == "collaborative":
            raise OperatorError(f"task {task_id} is collaborative: all of {', '.join(task.agents)} take part")
        if task.status == "pending":
            raise OperatorError(f"task {task_id} still waits for its dependencies")
        return task

    def _refusal(self, agent_id: str, *, freeing: int = 0) -> str | None:
        """Why `agent_id` cannot take one more task now: it is not running, or all its slots are taken
        (a reassignment never puts an agent over its max_concurrent_tasks); `freeing` slots are given back first."""
        agent = self._state.agents.get(agent_id)
        if agent is None:
            return "not connected"
        if agent.status not in PLACEABLE_AGENT_STATUSES:
            return agent.status
        running, limit = len(agent.current_tasks) - freeing, agent.max_concurrent_tasks
        if running >= limit:
            return f"full: {running} of {limit} tasks running (max_concurrent_tasks {limit})"
        return None

    def _nobody_else(self, task: TaskState, owners: set[str]) -> str:
        """Why no agent but the owner could do `task`: its pin, or the capabilities nobody else has."""
        holder = ", ".join(sorted(owners)) or "its agent"
        if task.pinned_agent:
            return f"task {task.id} is pinned to {task.pinned_agent} in the plan; no other agent may take it"
        others = [a for a_id, a in self._state.agents.items() if a_id not in owners]
        if not task.requires:
            return f"task {task.id} is with {holder} and there is no other agent"
        lacking = [c for c in task.requires if not any(c in a.capabilities for a in others)]
        if lacking:
            return f"no other agent has {', '.join(lacking)} (task {task.id} needs {', '.join(task.requires)}): it stays with {holder}"
        return f"no other agent has all of {', '.join(task.requires)}, which task {task.id} needs together: it stays with {holder}"

    def reassign(self, task_id: str, agent_id: str) -> None:
        """Move a task to `agent_id`, refused (and nothing changed) when that agent cannot take it now."""
        task = self._movable(task_id)
        if agent_id not in self._state.agents:
            raise OperatorError(f"unknown agent {agent_id!r}")
        if agent_id not in self._scheduler.capable_agents(task_id):
            raise OperatorError(f"agent {agent_id} lacks the capabilities task {task_id} requires")
        # To its own agent: a fresh attempt there, in the slot the current one gives back.
        refusal = self._refusal(agent_id, freeing=int(task.in_flight and agent_id in task.owners))
        if refusal:
            raise OperatorError(f"{agent_id} is {refusal}")
        self._record(OperatorAction(action="reassign", by=self.by, task_id=task_id, agent_id=agent_id))
        if task.in_flight:
            self._attempts.requeue(task, "operator")
        elif task.status == "retrying":
            self._emit(TaskReady(task_id=task_id))
        self._scheduler.discard(task_id)
        self._attempts.start(Placement(task_id, (agent_id,)))
        self._attempts.dispatch()

    def retry(self, task_id: str, *, finished: bool) -> None:
        """Run a failed or cancelled task again; dependents cancelled because of it come back too."""
        task = self._task(task_id)
        if finished:
            raise OperatorError("the sprint has finished; tasks can be retried while it runs")
        if task.status not in ("failed", "cancelled"):
            raise OperatorError(f"task {task_id} is {task.status}; only failed or cancelled tasks can be retried")
        tasks = self._state.tasks
        dead_ends = [d for d in task.dependencies if tasks[d].status in ("failed", "cancelled")]
        if dead_ends:
            raise OperatorError(f"task {task_id} depends on {', '.join(dead_ends)}, which did not complete; retry that first")
        self._record(OperatorAction(action="retry", by=self.by, task_id=task_id))
        reopened = [task_id] + [
            child
            for child in self._scheduler.descendants(task_id)
            if tasks[child].status == "cancelled" and (tasks[child].error or "").startswith("dependency ")
        ]
        for reopened_id in reopened:
            self._emit(TaskReset(task_id=reopened_id))
        if all(tasks[d].status == "completed" for d in task.dependencies):
            self._attempts.make_ready(task_id)
        self._attempts.dispatch()

    def cancel(self, task_id: str) -> None:
        task = self._task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is already {task.status}")
        self._record(OperatorAction(action="cancel", by=self.by, task_id=task_id))
        self._attempts.cancel(task_id, "cancelled by the operator", by=OPERATOR_ID)
        self._attempts.cancel_dependents(task_id, f"dependency {task_id} was cancelled")
        self._attempts.check_finished()
        self._attempts.dispatch()

    def set_priority(self, task_id: str, priority: str) -> None:
        task = self._task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is already {task.status}")
        self._record(OperatorAction(action="priority", by=self.by, task_id=task_id, priority=priority))
        self._emit(TaskPriority(task_id=task_id, priority=priority))
        if task.status == "ready":
            self._scheduler.push(task)
        self._attempts.dispatch()

    # ------------------------------------------------------------ agents and the sprint

    def pause_agent(self, agent_id: str, paused: bool = True) -> None:
        agent = self._state.agents.get(agent_id)
        if agent is None:
            raise OperatorError(f"unknown agent {agent_id!r}")
        if agent.status == "dead":
            raise OperatorError(f"agent {agent_id} is dead")
        if paused == (agent.status == "paused"):
            raise OperatorError(f"agent {agent_id} is already {'paused' if paused else 'running'}")
        self._record(OperatorAction(action="pause_agent" if paused else "resume_agent", by=self.by, agent_id=agent_id))
        self._emit(AgentStatus(agent_id=agent_id, status="paused" if paused else "ready"))
        self._attempts.dispatch()

    def pause_sprint(self, paused: bool = True) -> None:
        if paused == self._state.meta.paused:
            raise OperatorError(f"the sprint is already {'paused' if paused else 'running'}")
        self._record(OperatorAction(action="pause_sprint" if paused else "resume_sprint", by=self.by))
        self._emit(SprintPaused() if paused else SprintResumed())
        self._attempts.dispatch()

    # ------------------------------------------------------------ locks and files

    def force_release_consequences(self, lock_id: str) -> str:
        """The holder's task fails when it reports (its completion names a lock that is gone), and
        whatever is written to the lock's files without a lock is a conflict: said before, not after."""
        lock = self._state.locks.get(lock_id)
        if lock is None:
            raise OperatorError(f"no lock {lock_id!r} is held")
        task = f"task {lock.task_id}" if lock.task_id else "the task it holds the lock for"
        said = f"{lock.agent_id}'s {task} will fail when it reports: the lock it relies on is gone."
        if lock.lock_type != "read":
            said += f" {lock.resource_id} may go into conflict: {lock.agent_id} may go on writing it without the lock."
        return said

    def force_release(self, lock_id: str) -> None:
        grant = self._desk.get(lock_id)
        if grant is None:
            raise OperatorError(f"no lock {lock_id!r} is held")
        self._record(OperatorAction(action="force_release", by=self.by, lock_id=lock_id,
                                    resource_id=grant.resource_id, holder=grant.owner))
        self._desk.release(grant.owner, lock_id, reason="operator", by=OPERATOR_ID, operator=True)
        self._attempts.dispatch()

    def resolve_file(self, path: str, how: str, by: str = OPERATOR_ID,
                     note: str | None | Absent = Absent.ABSENT) -> MergeResult | None:
        """Accept, revert, merge or escalate a file's conflict (`note` goes with an escalation)."""
        if how not in RESOLUTIONS:
            raise OperatorError(f"unknown resolution {how!r}; use accept, revert, merge or escalate")
        try:
            resolutions = self._files.resolutions()
            resolutions.check(path, how)
        except ResolutionError as exc:
            raise OperatorError(str(exc)) from None
        self._record(OperatorAction(action=f"{how}_file", by=by, path=path, note=note))
        if how == "escalate":
            resolutions.escalate(path, by, None if isinstance(note, Absent) else note)
        elif how == "merge":
            return resolutions.merge(path, by)
        elif how == "accept":
            resolutions.accept(path, by)
        else:
            resolutions.revert(path, by)
        return None
