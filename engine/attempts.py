"""Task attempts: placing ready work on agents and seeing each attempt to its end.

An attempt is assigned (its locks asked for at the desk: granted, or it waits blocked), runs, and
ends completed, failed (retried with capped exponential back-off until the task's limit, then its
dependents are cancelled), cancelled, or taken away (an operator's reassignment, a dead agent).
Each retry is a new attempt number, which fences any late word from the old one.  Dispatch is
event driven: a completion readies its dependents in the same step, and work is placed after every
change (`dispatch`), never on a timer.  The sprint is finished when no task is left open.
"""

from __future__ import annotations

import asyncio
import random
from functools import partial

from engine.events import (
    ABSENT,
    AgentDead,
    Event,
    SprintFinished,
    TaskAssigned,
    TaskBlocked,
    TaskCancelled,
    TaskCompleted,
    TaskEvent,
    TaskFailed,
    TaskReady,
    TaskRequeued,
    TaskUnblocked,
)
from engine.lock_records import MODE_RANK, Conflict, Grant
from engine.lockdesk import LockDesk
from engine.mail import Post
from engine.metrics import sprint_metrics
from engine.models import TERMINAL_TASK_STATUSES, TaskState
from engine.payloads import LockType
from engine.plan import Plan, TaskSpec
from engine.protocol import MANAGER_ID, MessageType, make_message
from engine.recorder import Recorder
from engine.resources import LockError
from engine.scheduler import Placement, Scheduler
from engine.superseded import ContestedPaths

RETRY_BASE = 1.0  # seconds of sprint time before the first retry
RETRY_CAP = 30.0
#: Seconds past an attempt's max_execution_time before the manager fails it itself: an agent stops
#: its own work at the limit (and says so); this catches one that does not (a client of its own).
OVERRUN_GRACE = 3.0


def lock_requests(spec: TaskSpec) -> list[tuple[str, LockType]]:
    """The (path, mode) pairs each attempt of the task locks: a path named twice gets the stronger mode."""
    wanted = [(r.path, r.mode) for r in spec.resources] + [(p, "write") for p in spec.shared_resources]
    merged: dict[str, LockType] = {}
    for path, mode in wanted:
        if path not in merged or MODE_RANK[mode] > MODE_RANK[merged[path]]:
            merged[path] = mode
    return list(merged.items())


class Attempts:
    def __init__(self, plan: Plan, recorder: Recorder, post: Post, desk: LockDesk, scheduler: Scheduler, *,
                 seed: int, speed: float, contested: ContestedPaths | None = None) -> None:
        self._state = recorder.state
        self._emit = recorder.emit
        self._post = post
        self._desk = desk
        self._scheduler = scheduler
        self._seed = seed
        self._speed = speed
        self._contested = contested
        self._max_deaths = plan.settings.max_task_deaths
        self._specs = {spec.id: spec for spec in plan.tasks}  # plan.task() goes through pydantic's private-attribute lookup
        self._max_execution_time = {spec.id: spec.max_execution_time for spec in plan.agents}
        self._locks_of = {spec.id: lock_requests(spec) for spec in plan.tasks}  # the plan never changes
        self._collaborators_done: dict[str, set[str]] = {}
        self._open: set[str] = set()  # unfinished tasks, so the end check is O(1) per event
        self.finished = asyncio.Event()
        recorder.subscribe(self._track_open)

    # ------------------------------------------------------------ placing work

    def make_ready(self, task_id: str) -> None:
        task = self._state.tasks[task_id]
        if task.status in TERMINAL_TASK_STATUSES:
            return
        self._emit(TaskReady(task_id=task_id))
        self._scheduler.push(task)

    def dispatch(self) -> None:
        """Place ready tasks on free agents; called after every change, never on a timer."""
        if self.finished.is_set():
            return
        for placement in self._scheduler.place(self._state):
            self.start(placement)

    def start(self, placement: Placement) -> None:
        """A new attempt: assigned, then its locks asked for (granted: the agents hear of it)."""
        task = self._state.tasks[placement.task_id]
        attempt = task.attempt + 1
        self._collaborators_done.pop(task.id, None)
        self._emit(TaskAssigned(task_id=task.id, attempt=attempt, agents=list(placement.agents)))
        try:  # canonical now: a symlink made since the plan was checked may lead out of the workspace
            requests = [(self._desk.canonical(path), mode) for path, mode in self._locks_of[task.id]]
        except LockError as exc:
            self.fail(task, f"cannot lock its resources: {exc}", retryable=False)
            return
        if not requests:
            self.send_assignment(task)
            return
        outcome = self._desk.request(
            placement.agents[0], requests, request_id=f"{task.id}#{attempt}", claim=task.id, task_id=task.id,
            wait=True, granted=partial(self._unblocked, task.id), refused=partial(self._refused, task.id),
        )
        if outcome.status == "granted":
            self.send_assignment(task)
        elif outcome.status == "queued":
            self._emit(TaskBlocked(task_id=task.id, paths=[path for path, _ in requests]))
        else:
            self._requeue_refused(task.id, attempt)

    def _unblocked(self, task_id: str, grants: list[Grant], waited: float) -> None:
        self._emit(TaskUnblocked(task_id=task_id, waited=waited))
        self.send_assignment(self._state.tasks[task_id])

    def _refused(self, task_id: str, reason: str, conflict: Conflict | None) -> None:
        self._requeue_refused(task_id, self._state.tasks[task_id].attempt)

    def _requeue_refused(self, task_id: str, attempt: int) -> None:
        """The attempt's locks were refused: it goes back to ready, held back until locks change."""
        self._emit(TaskRequeued(task_id=task_id, attempt=attempt, reason="lock_refused"))
        self._scheduler.defer(task_id)

    def send_assignment(self, task: TaskState) -> None:
        spec = self._specs[task.id]
        refs = [
            {"resourceId": g.resource_id, "lockType": g.mode, "lockId": g.lock_id, "token": g.token}
            for g in self._desk.attempt_grants(task.id)
        ]
        recipients = task.owners
        limits = [limit for a in recipients if (limit := self._max_execution_time.get(a))]
        if limits:
            asyncio.get_running_loop().call_later(max(limits) + OVERRUN_GRACE, self._overran, task.id, task.attempt,
                                                  max(limits))
        for agent_id in recipients:
            payload = {
                "taskId": task.id,
                "attempt": task.attempt,
                "title": task.title,
                "description": spec.description,
                "command": spec.command,
                "estimate": spec.estimate,
                "agents": list(recipients),
                "locks": refs,
                "maxExecutionTime": self._max_execution_time.get(agent_id),
            }
            self._post(make_message(MessageType.TASK_ASSIGN, MANAGER_ID, agent_id, payload, priority=task.priority))

    def _overran(self, task_id: str, attempt: int, limit: float) -> None:
        """The attempt is still live past its limit (and the grace): stopped and failed here."""
        task = self._state.tasks[task_id]
        if task.attempt != attempt or not task.in_flight or self.finished.is_set():
            return
        reason = f"exceeded max_execution_time of {limit:g}s; stopped by the sprint manager"
        self._stop(task, reason, self._working_on(task))
        self.fail(task, reason, retryable=True)
        self.dispatch()

    # ------------------------------------------------------------ ends of attempts

    def collaborator_done(self, task: TaskState, agent_id: str) -> bool:
        """One agent of a collaborative attempt finished its part; whether every agent has."""
        done = self._collaborators_done.setdefault(task.id, set())
        done.add(agent_id)
        return set(task.agents) <= done

    def complete(self, task: TaskState, agent_id: str) -> None:
        # An attempt that reported no start goes from assigned straight to completed (as it goes
        # to failed): the completion's own time is its start, and a task_started at that same
        # instant would only be one more event to journal and fold.
        self._emit(TaskCompleted(task_id=task.id, attempt=task.attempt, agent=agent_id))
        self._end(task.id)
        for child in self._scheduler.dependency_done(task.id):
            self.make_ready(child)
        self.check_finished()

    def fail(self, task: TaskState, error: str, *, retryable: bool, exit_code: int | None = None) -> None:
        will_retry = retryable and task.failures < task.max_retries
        delay = self._backoff(task) if will_retry else None
        self._emit(TaskFailed(task_id=task.id, attempt=task.attempt, error=error, will_retry=will_retry, retry_in=delay,
                              exit_code=ABSENT if exit_code is None else exit_code))
        self._end(task.id)
        if delay is not None:
            asyncio.get_running_loop().call_later(delay, self._retry_due, task.id, task.attempt)
        else:
            self.cancel_dependents(task.id, f"dependency {task.id} failed")
            self.check_finished()

    def _end(self, task_id: str) -> None:
        """Give back everything the task's current attempt holds or waits for."""
        self._collaborators_done.pop(task_id, None)
        self._desk.end_attempt(task_id)

    def _backoff(self, task: TaskState) -> float:
        """Capped exponential backoff with equal jitter, deterministic for the seed."""
        rng = random.Random(f"{self._seed}:{task.id}:{task.failures}")
        ceiling = min(RETRY_CAP, RETRY_BASE * 2.0**task.failures)
        return round(ceiling * (0.5 + 0.5 * rng.random()) / self._speed, 4)

    def _retry_due(self, task_id: str, attempt: int) -> None:
        task = self._state.tasks[task_id]
        if task.status == "retrying" and task.attempt == attempt and not self.finished.is_set():
            self.make_ready(task_id)
            self.dispatch()

    def cancel(self, task_id: str, reason: str, *, by: str) -> None:
        task = self._state.tasks[task_id]
        self._stop(task, reason, self._working_on(task))
        self._scheduler.discard(task_id)
        self._emit(TaskCancelled(task_id=task_id, reason=reason, by=by))
        self._end(task_id)

    def cancel_dependents(self, task_id: str, reason: str) -> None:
        for child in self._scheduler.descendants(task_id):
            if self._state.tasks[child].status not in TERMINAL_TASK_STATUSES:
                self.cancel(child, reason, by=MANAGER_ID)

    def requeue(self, task: TaskState, reason: str) -> None:
        """Take a live attempt away (operator reassignment); the next attempt gets attempt+1."""
        self._stop(task, reason, self._working_on(task))
        self._end(task.id)
        self._emit(TaskRequeued(task_id=task.id, attempt=task.attempt, reason=reason))

    def _stop(self, task: TaskState, reason: str, agents: list[str]) -> None:
        """Tell the agents working on the task's live attempt to stop (a shell agent kills its command)."""
        for agent_id in agents:
            payload = {"taskId": task.id, "attempt": task.attempt, "reason": reason}
            self._post(make_message(MessageType.TASK_CANCEL, MANAGER_ID, agent_id, payload, priority="high"))

    @staticmethod
    def _working_on(task: TaskState) -> list[str]:
        return task.owners if task.in_flight else []

    def agent_died(self, agent_id: str, reason: str, *, orderly: bool = False, exited: bool = False) -> None:
        """One atomic event: locks released, tasks requeued as new attempts.

        A dead agent's paths are held back for lock-delay (it may still be writing); an agent that
        left in good order (`orderly`) lets go of them at once.  Unless its process is known to have
        exited (`exited`: its commands died with it), its write paths stay contested
        (engine/superseded.py) until it is heard from again.  A task whose agents died under it
        `max_task_deaths` times fails instead of going round again.
        """
        agent = self._state.agents[agent_id]
        if agent.status == "dead":
            return
        requeued = list(agent.current_tasks)
        superseded = {task_id: self._state.tasks[task_id].attempt for task_id in requeued}
        grants = [] if orderly or exited or self._contested is None else self._desk.grants_of(agent_id)
        for task_id in requeued:
            task = self._state.tasks[task_id]
            self._stop(task, f"{agent_id} died", [a for a in self._working_on(task) if a != agent_id])
            self._collaborators_done.pop(task_id, None)

        def record(released: list[str], cancelled: list[str]) -> None:
            self._emit(AgentDead(agent_id=agent_id, reason=reason, released_locks=released,
                                 requeued_tasks=requeued, cancelled_requests=cancelled))

        # No lock-delay when its process is known to have exited: its commands died with it.
        self._desk.end_agent(agent_id, requeued, record, hold_back=not (orderly or exited))
        if grants and self._contested is not None:
            self._contested.contest(grants, superseded)
        for task_id in requeued:
            task = self._state.tasks[task_id]
            if orderly or task.agent_deaths < self._max_deaths:
                self._scheduler.push(task)
                continue
            error = f"agent died {task.agent_deaths} times running it (max_task_deaths: {self._max_deaths})"
            self._emit(TaskFailed(task_id=task_id, attempt=task.attempt, error=error, will_retry=False, retry_in=None))
            self.cancel_dependents(task_id, f"dependency {task_id} failed")
        self.dispatch()
        self.check_finished()

    # ------------------------------------------------------------ the end

    def _track_open(self, event: Event) -> None:
        body = event.body
        if isinstance(body, TaskEvent) and body.task_id in self._state.tasks:
            if self._state.tasks[body.task_id].status in TERMINAL_TASK_STATUSES:
                self._open.discard(body.task_id)
            else:
                self._open.add(body.task_id)

    def track_all(self) -> None:
        """Count every unfinished task (at the start, and after a restart rebuilt the state)."""
        self._open = {t.id for t in self._state.tasks.values() if t.status not in TERMINAL_TASK_STATUSES}

    def resume(self) -> None:
        """A restarted manager: the open tasks recounted; a sprint that ended before the crash
        stays ended (its end is not recorded twice)."""
        self.track_all()
        if self._state.meta.finished_at is not None and not self._open:
            self.finished.set()

    def check_finished(self) -> None:
        if self.finished.is_set() or self._open:
            return
        metrics = sprint_metrics(self._state)
        self._emit(SprintFinished(completed=metrics.completed_tasks, failed=metrics.failed_tasks,
                                  cancelled=metrics.cancelled_tasks))
        self.finished.set()
