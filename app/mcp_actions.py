"""What each tool of `sprintdeck mcp` does, in the protocol's messages, answered in sentences.

The model reads every answer, so an answer says what happened and, when something was refused,
what to do next (work on other files, queue, message the holder...).  Refusals are raised as
`ToolProblem`; app/mcp_server.py turns them into MCP tool errors.  Nothing here imports `mcp`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from app.mcp_agent import AgentLink, Assignment, ToolProblem
from engine.atomic_file import write_atomically
from engine.models import ResourceLock, TaskState
from engine.payloads import ResourceConflictPayload
from engine.protocol import BROADCAST, MANAGER_ID, MessageType
from engine.resources import LockError, normalise_resource

Mode = Literal["read", "write", "exclusive"]
HOW_TO_WORK = (
    "How to work here: you are one agent of a sprint that several agents work on at once, in one "
    "repository. Your assignments are listed above; call list_tasks to see the whole sprint, and "
    "claim_task to take a ready task you can do when you have none. Before you edit a file, call "
    "acquire_lock on it (write, or exclusive for a directory you restructure); the sprintdeck hook "
    "enforces this: it refuses an edit of a file another agent holds for writing. When a lock is "
    "refused, work on other files, queue with wait_seconds, or send_message to the holder. Call "
    "report_progress now and then, and finish every task with complete_task (a summary of what you "
    "did) or fail_task (what went wrong): the sprint waits on it. Check read_inbox for messages "
    "from other agents; request_assistance asks them for help."
)
_HOLDING = {"read": "for reading", "write": "for writing", "exclusive": "exclusively"}


# ---------------------------------------------------------------- who and what


async def whoami(link: AgentLink) -> dict[str, Any]:
    """The agent as the manager sees it now: its plan entry, its attempts and the locks it holds."""
    state = await link.agree()
    welcome = link.welcome
    spec = welcome.get("agent") or {}
    me: dict[str, Any] = {"agentId": link.agent_id, "sprint": welcome.get("sprint")}
    if spec.get("role"):
        me["role"] = spec["role"]
    statuses = {key: task.get("status") for key, task in state.get("tasks", {}).items()}
    held = [ResourceLock.model_validate(raw) for raw in state.get("locks", {}).values()]
    me |= {
        "capabilities": spec.get("capabilities", []),
        "specializations": spec.get("specializations", []),
        "maxConcurrentTasks": spec.get("max_concurrent_tasks", 1),
        "workspace": welcome.get("workspace"),
        "assignments": [
            {"taskId": a.task_id, "attempt": a.attempt, "title": a.title, "status": statuses.get(a.task_id)}
            | ({"with": [agent for agent in a.agents if agent != link.agent_id]} if len(a.agents) > 1 else {})
            for a in link.assignments.values()
        ],
        "locks": [_lock_line(lock.resource_id, lock.lock_type, lock.task_id) for lock in held
                  if lock.agent_id == link.agent_id],
        "unreadMessages": len(link.notes),
        "howToWork": HOW_TO_WORK,
    }
    return me


async def list_tasks(link: AgentLink) -> dict[str, Any]:
    state = await link.state(["tasks", "agents", "locks"])
    tasks = {key: TaskState.model_validate(raw) for key, raw in state.get("tasks", {}).items()}
    locks = [ResourceLock.model_validate(raw) for raw in state.get("locks", {}).values()]
    mine = state.get("agents", {}).get(link.agent_id, {})
    capabilities = set(mine.get("capabilities", []))
    rows = [_task_row(task, tasks, locks, link.agent_id, capabilities) for task in tasks.values()]
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    claimable = [row["id"] for row in rows if row.get("youCanClaim")]
    return {"you": link.agent_id, "counts": counts, "youCanClaim": claimable, "tasks": rows}


def _task_row(task: TaskState, tasks: dict[str, TaskState], locks: list[ResourceLock], me: str,
              capabilities: set[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": task.id, "title": task.title, "status": task.status}
    owners = task.owners
    if owners:
        row["owner"] = owners if len(owners) > 1 else owners[0]
    if task.dependencies:
        row["dependsOn"] = task.dependencies
    waiting = _waiting_for(task, tasks, locks)
    if waiting:
        row["waitingFor"] = waiting
    if task.in_flight and me in owners:
        row["yours"] = True
        row["attempt"] = task.attempt
    if task.progress:
        row["progress"] = task.progress
    if task.error and task.status in ("failed", "retrying"):
        row["error"] = task.error
    if task.status == "ready" and task.coordination != "collaborative" and task.pinned_agent in (None, me) \
            and set(task.requires) <= capabilities:
        row["youCanClaim"] = True
    return row


def _waiting_for(task: TaskState, tasks: dict[str, TaskState], locks: list[ResourceLock]) -> list[str]:
    if task.status == "pending":
        unmet = [tasks[d] for d in task.dependencies if d in tasks and tasks[d].status != "completed"]
        return [f"task {d.id} ({d.status}{', ' + d.agent if d.agent and d.in_flight else ''})" for d in unmet]
    if task.status == "blocked":
        return [_lock_wait(path, locks) for path in task.blocked_on]
    if task.status == "retrying":
        return [f"a retry (attempt {task.attempt} failed: {task.error})"]
    return []


def _lock_wait(path: str, locks: list[ResourceLock]) -> str:
    holders = [f"{lock.agent_id}" + (f" for task {lock.task_id}" if lock.task_id else "")
               for lock in locks if lock.resource_id == path]
    return f"lock on {path}" + (f" (held by {', '.join(holders)})" if holders else "")


# ---------------------------------------------------------------- tasks


async def claim_task(link: AgentLink, task_id: str) -> str:
    reply = await link.ask(MessageType.TASK_CLAIM, {"taskId": task_id})
    if reply.type == MessageType.AGENT_ERROR:
        hint = "; call list_tasks to see the task ids" if reply.payload.error.startswith("unknown task") else ""
        raise ToolProblem(reply.payload.error + hint)
    data = reply.payload.data
    known = link.assignments.get(task_id)
    if known is None or known.attempt != data["attempt"]:
        link.assignments[task_id] = Assignment(task_id, data["attempt"], known.title if known else "")
    answer = f"Task {task_id} is yours (attempt {data['attempt']}, status {data['status']})."
    if data.get("waitingFor"):
        answer += (f" It waits for the locks on {', '.join(data['waitingFor'])}, which the manager takes for it; "
                   "it starts once they are free.")
    granted = [h.resource_id for h in link.locks.values() if h.task_id == task_id]
    if granted:
        answer += f" The manager holds these locks for it: {', '.join(granted)}."
    return answer + " Lock the other files you edit with acquire_lock; finish with complete_task or fail_task."


async def report_progress(link: AgentLink, message: str, fraction: float | None, task_id: str | None) -> str:
    work = link.assignment(task_id)
    payload: dict[str, Any] = {"taskId": work.task_id, "attempt": work.attempt, "message": message}
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ToolProblem(f"fraction {fraction} is not between 0 and 1 (0.5 means half done)")
        payload["progress"] = fraction
    try:
        await link.tell(link.message(MessageType.TASK_UPDATE, payload), ["agents"])
    except ToolProblem as problem:
        link.finished(work.task_id)
        raise ToolProblem(f"{problem}; this attempt is no longer yours, so stop working on {work.task_id}") from None
    done = f" ({fraction:.0%} done)" if fraction is not None else ""
    return f"Progress on {work.task_id} recorded{done}."


def _leave_verdict(link: AgentLink, verdict: dict[str, Any]) -> str | None:
    """In a run the manager started (kind: claude), the run's end decides the attempt: the model's
    verdict is left for it, so the outcome and what the run cost arrive together, once."""
    path = link.identity.verdict_file if link.identity else None
    if path is None:
        return None
    write_atomically(Path(path), json.dumps(verdict))
    return (f"Recorded: the task {verdict['outcome']} when this run ends, which the sprint manager sees. "
            "Finish now with a short summary of what you did.")


async def complete_task(link: AgentLink, summary: str, task_id: str | None) -> str:
    """task_complete with the attempt and, as its fencing, the locks held for the task."""
    left = _leave_verdict(link, {"outcome": "completed", "summary": summary})
    if left is not None:
        return left
    work = link.assignment(task_id)
    refs = [held.ref() for held in link.locks.values() if held.task_id == work.task_id]
    payload = {"taskId": work.task_id, "attempt": work.attempt, "result": summary, "locks": refs}
    try:
        state = await link.tell(link.message(MessageType.TASK_COMPLETE, payload), ["tasks", "locks"])
    except ToolProblem as problem:
        link.finished(work.task_id)
        raise ToolProblem(f"the manager refused to complete {work.task_id}: {problem}. Your work on it is not "
                          "recorded; call list_tasks to see where the task stands") from None
    released = _released_with(link, work.task_id, state)
    link.finished(work.task_id)
    task = TaskState.model_validate(state["tasks"][work.task_id])
    if task.status != "completed":
        others = [agent for agent in task.agents if agent != link.agent_id]
        answer = f"Your part of {work.task_id} is recorded; it completes when {', '.join(others)} have finished theirs."
    else:
        answer = f"Task {work.task_id} is completed."
        unblocked = sorted(t["id"] for t in state["tasks"].values()
                           if t["status"] != "pending" and work.task_id in t.get("dependencies", []))
        if unblocked:
            answer += f" It unblocked {', '.join(unblocked)}."
    if released:
        answer += f" Released your locks on {', '.join(released)}."
    return answer + (" You have no task now; call list_tasks to find one to claim." if not link.assignments else "")


async def fail_task(link: AgentLink, error: str, retryable: bool, task_id: str | None) -> str:
    left = _leave_verdict(link, {"outcome": "failed", "error": error, "retryable": retryable})
    if left is not None:
        return left
    work = link.assignment(task_id)
    payload = {"taskId": work.task_id, "attempt": work.attempt, "error": error, "retryable": retryable}
    try:
        state = await link.tell(link.message(MessageType.TASK_FAILED, payload), ["tasks", "locks"])
    except ToolProblem as problem:
        link.finished(work.task_id)
        raise ToolProblem(f"the manager refused the failure of {work.task_id}: {problem}") from None
    released = _released_with(link, work.task_id, state)
    link.finished(work.task_id)
    task = TaskState.model_validate(state["tasks"][work.task_id])
    if task.status in ("retrying", "ready", "assigned", "running", "blocked"):
        answer = f"Task {work.task_id} attempt {work.attempt} is recorded as failed; the manager will retry it."
    else:
        answer = f"Task {work.task_id} has failed for good ({task.status}); the tasks that depend on it are cancelled."
    return answer + (f" Released your locks on {', '.join(released)}." if released else "")


def _released_with(link: AgentLink, task_id: str, state: dict[str, Any]) -> list[str]:
    """The paths the agent held for the task that the manager let go of when it ended (it ends a
    task's grants and the locks the agent took for it)."""
    still = {raw["lockId"] for raw in state.get("locks", {}).values()}
    ended = [held for lock_id, held in link.locks.items() if held.task_id == task_id and lock_id not in still]
    return sorted({held.resource_id for held in ended})


# ---------------------------------------------------------------- locks


def workspace_path(link: AgentLink, raw: str) -> str:
    """A resource id for `raw`: workspace-relative as given, or an absolute path inside the workspace."""
    text = raw.strip()
    if text.startswith(("/", "~")):
        absolute = os.path.realpath(os.path.expanduser(text))
        roots = [root for root in (link.identity.project_dir if link.identity else None, link.welcome.get("workspace")) if root]
        for root in roots:
            real_root = os.path.realpath(root)
            if absolute.startswith(real_root + os.sep):
                return normalise_resource(os.path.relpath(absolute, real_root))
        where = " or ".join(roots) or "the workspace"
        raise ToolProblem(f"{raw} is outside the workspace ({where}); give a path relative to the workspace root, "
                          "e.g. src/app.py")
    try:
        return normalise_resource(text)
    except LockError as exc:
        raise ToolProblem(f"{exc}; give a path relative to the workspace root, e.g. src/app.py") from None


async def acquire_lock(link: AgentLink, paths: list[str], mode: Mode, wait_seconds: float, task_id: str | None) -> str:
    link.ready()
    if not paths:
        raise ToolProblem("name at least one path to lock")
    resources = [workspace_path(link, path) for path in paths]
    task = link.assignment(task_id).task_id if task_id or len(link.assignments) == 1 else None
    payload: dict[str, Any] = {"resourceId": resources[0], "lockType": mode,
                               "also": [{"resourceId": path, "lockType": mode} for path in resources[1:]]}
    if task:
        payload["taskId"] = task
    wait = max(0.0, wait_seconds)
    if wait:
        payload["waitMs"] = int(wait * 1000)
    reply = await link.ask(MessageType.RESOURCE_LOCK, payload, timeout=wait + 15.0)
    if reply.type == MessageType.RESOURCE_CONFLICT:
        raise ToolProblem(conflict_sentence(reply.payload, link.agent_id, wait))
    if reply.type != MessageType.RESOURCE_LOCK:
        raise ToolProblem(reply.payload.error if reply.type == MessageType.AGENT_ERROR else f"unexpected answer {reply.type}")
    held = link.keep_grant(reply, task)
    what = ", ".join(f"{h.resource_id} (token {h.token})" for h in held)
    purpose = f" for task {task}" if task else ""
    return f"Granted: {mode} lock on {what}{purpose}. Release it with release_lock when you are done" + (
        "; complete_task and fail_task release it for you." if task else ".")


def conflict_sentence(conflict: ResourceConflictPayload, me: str, waited: float) -> str:
    """Why a lock was refused, and what the model can do instead."""
    path, holder, reason = conflict.resource_id, conflict.holder, conflict.reason
    if reason.startswith("deadlock"):
        return f"{path}: waiting would deadlock ({reason}); release a lock you hold, or work on other files"
    if reason.startswith("not granted within"):
        return f"{path} was not free within {waited:g} s; work on other files, or try again with a longer wait_seconds"
    if holder is None:
        return f"{path} cannot be locked now: {reason}; work on other files and try again later"
    if "held back" in reason:
        return f"{path} is held back for a moment because {holder} lost its lock on it; try again in a few seconds"
    if holder == me:
        return f"{path}: you hold it {_HOLDING.get(conflict.holder_mode or '', '')} yourself ({reason})"
    held = _HOLDING.get(conflict.holder_mode or "", "")
    task = f" for task {conflict.holder_task}" if conflict.holder_task else ""
    if "queued earlier" in reason:
        return (f"{path}: {holder} is queued for it {held}{task} ahead of you; work on other files, call acquire_lock "
                f"with wait_seconds to queue behind it, or send_message to {holder}")
    return (f"{path} is locked {held} by {holder}{task}; work on other files, call acquire_lock with wait_seconds "
            f"to queue, or send_message to {holder}")


async def release_lock(link: AgentLink, paths: list[str]) -> str:
    link.ready()
    if not paths:
        raise ToolProblem("name at least one path to release")
    released: list[str] = []
    problems: list[str] = []
    for path in [workspace_path(link, raw) for raw in paths]:
        ids: list[str | None] = [lock_id for lock_id, held in link.locks.items() if held.resource_id == path]
        for lock_id in ids or [None]:  # a lock this process does not know of: the manager finds it
            payload = {"resourceId": path} | ({"lockId": lock_id} if lock_id else {})
            reply = await link.ask(MessageType.RESOURCE_UNLOCK, payload)
            if lock_id:
                link.locks.pop(lock_id, None)
            if reply.type == MessageType.RESOURCE_UNLOCK:
                released.append(path)
            else:
                problems.append(reply.payload.error if reply.type == MessageType.AGENT_ERROR else str(reply.type))
    if problems and not released:
        raise ToolProblem("; ".join(problems))
    answer = f"Released {', '.join(dict.fromkeys(released))}."
    return answer + (f" Not released: {'; '.join(problems)}." if problems else "")


# ---------------------------------------------------------------- talking to other agents


async def _recipient(link: AgentLink, to: str) -> tuple[str, str]:
    """The wire recipient for `to` and a remark on it (an agent that is not there reads it later)."""
    if to.strip().lower() in ("", BROADCAST, "all", "everyone"):
        return BROADCAST, ""
    agents = (await link.state(["agents"])).get("agents", {})
    if to == link.agent_id:
        raise ToolProblem("that is you; name another agent, or broadcast")
    if to == MANAGER_ID or to not in agents:
        others = ", ".join(sorted(a for a in agents if a != link.agent_id)) or "none"
        raise ToolProblem(f"there is no agent {to!r} in this sprint; the other agents are: {others} (or broadcast)")
    status = agents[to].get("status")
    return to, (f" {to} is {status} now; it reads the message when it is back." if status == "dead" else "")


async def send_message(link: AgentLink, to: str, text: str, task_id: str | None) -> str:
    recipient, remark = await _recipient(link, to)
    data = {"taskId": task_id} if task_id else {}
    await link.tell(link.message(MessageType.BROADCAST_INFO, {"info": text, "data": data}, to=recipient), ["agents"])
    return f"Sent to {'every agent' if recipient == BROADCAST else recipient}.{remark}"


async def request_assistance(link: AgentLink, topic: str, details: str, to: str, task_id: str | None) -> str:
    recipient, remark = await _recipient(link, to)
    task = task_id or (next(iter(link.assignments)) if len(link.assignments) == 1 else None)
    payload = {"topic": topic, "details": details} | ({"taskId": task} if task else {})
    await link.tell(link.message(MessageType.REQUEST_ASSISTANCE, payload, to=recipient), ["agents"])
    who = "every agent" if recipient == BROADCAST else recipient
    return f"Asked {who} for help with {topic!r}.{remark} Answers arrive in read_inbox."


async def read_inbox(link: AgentLink) -> dict[str, Any]:
    if link.problem is not None:
        raise ToolProblem(link.problem)
    link.catch_up()
    messages = [note.as_dict() for note in link.notes]
    link.notes.clear()
    return {"messages": messages} if messages else {"messages": [], "note": "no new messages"}


def _lock_line(path: str, mode: str, task_id: str | None) -> dict[str, Any]:
    return {"path": path, "mode": mode} | ({"task": task_id} if task_id else {})
