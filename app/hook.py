"""`sprintdeck hook EVENT`: Claude Code's hooks, made binding by the sprint manager's locks.

Claude Code runs this command on its events with the event's JSON on stdin (DESIGN §10).  Before an
edit it asks the manager for a write lock on the file: granted, it prints nothing (never "allow",
which would bypass the user's own permission rules); held by another agent, it denies the edit with
a reason that tells the model whose file it is and what to do instead.  Standard library only
(tests/test_architecture.py checks it): this process starts on every edit.

Exit codes follow Claude Code's contract: 0 (with JSON on stdout when there is something to say),
1 with one line on stderr for bad input (not a hook event, not JSON).  A hook never waits past its
deadline (SPRINTDECK_HOOK_DEADLINE_MS); when the manager does not answer in time, edits are denied
(fail closed) unless SPRINTDECK_FAIL_OPEN=1.
"""

from __future__ import annotations

import json
import os
import sys

from app.hook_link import Deadline, Identity, Link, NotConfigured, Refused, Unreachable, identity_from

TYPE_CHECKING = False  # typing and dataclasses would add a third to the start-up of every edit
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, BinaryIO

DEADLINE_ENV = "SPRINTDECK_HOOK_DEADLINE_MS"
WAIT_ENV = "SPRINTDECK_HOOK_WAIT_MS"
FAIL_OPEN_ENV = "SPRINTDECK_FAIL_OPEN"
TASK_ENV = "SPRINTDECK_TASK_ID"  # set by the manager for a `kind: claude` run: the task it is for
DEFAULT_DEADLINE_MS = 3000
ANSWER_MARGIN_MS = 250  # of the deadline, kept for the manager's answer after a queued wait
MAX_INPUT = 64 * 1024 * 1024  # a Write's input carries the whole file
MAX_CONTEXT = 10_000  # Claude Code's cap on additionalContext
#: The tools that change a file, and where their input names it.
EDIT_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}


class BadInput(Exception):
    """Not a hook call we can read: one line on stderr, exit 1."""


class BadSetting(BadInput):
    """A SPRINTDECK_HOOK_* variable that is not a number: before an edit, that denies it."""


class Call:
    """One hook call: the event's JSON and this process's environment."""

    def __init__(self, event: str, data: dict[str, Any], environ: Mapping[str, str]) -> None:
        self.event, self.data, self.environ = event, data, environ
        self.deadline = Deadline(_ms(environ, DEADLINE_ENV, DEFAULT_DEADLINE_MS, minimum=1))

    @property
    def session(self) -> str | None:
        session = self.data.get("session_id")
        return session if isinstance(session, str) and session else None

    @property
    def fail_open(self) -> bool:
        return self.environ.get(FAIL_OPEN_ENV, "").strip() in ("1", "true", "yes")

    @property
    def workspace(self) -> str:
        """Paths are locked relative to the project Claude Code runs in."""
        return self.environ.get("CLAUDE_PROJECT_DIR") or str(self.data.get("cwd") or os.getcwd())

    def identity(self) -> Identity:
        return identity_from(self.environ)

    def link(self) -> Link:
        return Link.open(self.identity(), self.deadline, session=self.session)


def _ms(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadSetting(f"{name}={text!r} should be a whole number of milliseconds") from None
    if value < minimum:
        raise BadSetting(f"{name}={text!r} should be at least {minimum}")
    return value


# ---------------------------------------------------------------- edits: the lock before, the checksum after


def edited_path(call: Call) -> str | None:
    """The file an edit tool is about to change, as given (None: not an edit tool)."""
    key = EDIT_TOOLS.get(str(call.data.get("tool_name", "")))
    if key is None:
        return None
    tool_input = call.data.get("tool_input")
    value = tool_input.get(key) if isinstance(tool_input, dict) else None
    if not isinstance(value, str) or not value:
        raise Outside(f"the {call.data['tool_name']} call names no {key}")
    return value


class Outside(Exception):
    """A path the sprint does not cover (outside the workspace, or none at all)."""


def workspace_path(call: Call, path: str) -> str:
    """`path` relative to the workspace, after symlinks: a link out of the workspace is outside."""
    root = os.path.realpath(call.workspace)
    full = os.path.realpath(os.path.join(str(call.data.get("cwd") or root), path))
    relative = os.path.relpath(full, root)
    if relative == "." or relative.startswith(".." + os.sep) or relative == ".." or os.path.isabs(relative):
        raise Outside(f"{path} is outside the sprint's workspace {root}; sprint agents edit files in the "
                      "workspace only: make the change there, or ask the operator")
    return relative.replace(os.sep, "/")


def pre_tool_use(call: Call) -> dict[str, Any] | None:
    """Ask for a write lock on the file about to be edited; deny the edit when it is not granted."""
    try:
        path = edited_path(call)
        if path is None:
            return None  # Bash and the rest: nothing before (post-tool-use reports what changed)
        relative = workspace_path(call, path)
        identity = call.identity()
        with Link.open(identity, call.deadline, session=call.session) as link:
            reply = link.ask("resource_lock", _lock_request(call, link, relative))
    except Outside as exc:
        return deny(str(exc))
    except Refused as exc:
        return deny(f"sprintdeck refused this agent: {exc}")
    except (NotConfigured, Unreachable) as exc:
        return None if call.fail_open else deny(f"sprintdeck cannot check the lock ({exc}); the edit is refused "
                                                f"so nothing is overwritten; {FAIL_OPEN_ENV}=1 allows edits without it")
    kind, payload = reply.get("type"), reply.get("payload") or {}
    if kind == "resource_lock":
        return None  # granted, or already held: say nothing, so the user's permission rules still apply
    if kind == "resource_conflict":
        return deny(conflict_reason(relative, payload))
    return deny(f"sprintdeck refused the lock on {relative}: {payload.get('error', kind)}")


def _lock_request(call: Call, link: Link, relative: str) -> dict[str, Any]:
    request: dict[str, Any] = {"resourceId": relative, "lockType": "write"}
    wait = min(_ms(call.environ, WAIT_ENV, 0), call.deadline.left_ms() - ANSWER_MARGIN_MS)
    if wait > 0:
        request["waitMs"] = wait
    task = current_task(call, link)
    if task:
        request["taskId"] = task  # the lock goes with the task: released when it ends, named in denials
    return request


def current_task(call: Call, link: Link) -> str | None:
    """The task this agent's edits are for: the one its run was started for, or its only assignment."""
    task = call.environ.get(TASK_ENV, "").strip()
    if task:
        return task
    assignments = link.welcome.get("assignments") or []
    return str(assignments[0]["taskId"]) if len(assignments) == 1 else None


def conflict_reason(path: str, conflict: Mapping[str, Any]) -> str:
    """Whose file it is and what the model can do instead of editing it now."""
    holder = conflict.get("holder") or "another agent"
    mode = {"read": "reading", "exclusive": "exclusive use"}.get(str(conflict.get("holderMode")), "writing")
    task = f" for task {conflict['holderTask']}" if conflict.get("holderTask") else ""
    why = str(conflict.get("reason") or "")
    detail = f" ({why})" if why and holder not in why else ""
    return (f"sprintdeck: {path} is locked for {mode} by agent {holder}{task}{detail}. Do not edit it now. "
            f"Instead: work on other files first; or call the MCP tool acquire_lock with paths [\"{path}\"] and "
            f"wait_seconds to queue until {holder} lets go; or send_message to {holder} to ask when it is done.")


def deny(reason: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                   "permissionDecisionReason": reason}}


def post_tool_use(call: Call) -> dict[str, Any] | None:
    """After an edit, report the file's checksum fenced with the lock; after anything, say which
    files changed without a lock (a Bash command's doing, most often) that this session was not told of."""
    try:
        path = edited_path(call)
        relative = workspace_path(call, path) if path is not None else None
    except Outside:
        relative = None
    try:
        with call.link() as link:
            if relative is not None:
                _report_checksum(call, link, relative)
            reply = link.ask("state_request", {"sections": ["conflicts"]})
    except (NotConfigured, Unreachable, Refused) as exc:
        print(f"sprintdeck hook post-tool-use: {exc}", file=sys.stderr)
        return None
    conflicts = ((reply.get("payload") or {}).get("state") or {}).get("conflicts") or {}
    news = ToldConflicts(call).news(conflicts)
    if not news:
        return None
    return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": conflict_report(news)}}


def _report_checksum(call: Call, link: Link, relative: str) -> None:
    """The watcher then attributes the change to this agent's lock, whatever order things arrive in."""
    import hashlib  # only after an edit: OpenSSL's start-up is not paid before every edit

    try:
        with open(os.path.join(os.path.realpath(call.workspace), relative), "rb") as file:
            checksum = "sha256:" + hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return  # gone again, or never written: the watcher reports what is there
    grant = link.ask("resource_lock", {"resourceId": relative, "lockType": "write"})  # re-asked: the same grant
    payload = grant.get("payload") or {}
    if grant.get("type") == "resource_lock":
        link.tell("state_update", {"path": relative, "checksum": checksum,
                                   "lockId": payload.get("lockId"), "token": payload.get("token")})


class ToldConflicts:
    """The conflicts this session has been told of, kept in a small file between hook processes."""

    def __init__(self, call: Call) -> None:
        directory = os.path.join(call.environ.get("TMPDIR") or "/tmp", f"sprintdeck-hook-{os.getuid()}")
        session = "".join(c for c in (call.session or "none") if c.isalnum() or c == "-")[:80]
        agent = "".join(c for c in call.environ.get("SPRINTDECK_AGENT_ID", "") if c.isalnum() or c in "-_")[:80]
        self.directory, self.path = directory, os.path.join(directory, f"{agent}.{session}.json")

    def news(self, conflicts: Mapping[str, Any]) -> dict[str, Any]:
        told = self._read()
        keys = {_conflict_key(path, state): path for path, state in conflicts.items()}
        news = {path: conflicts[path] for key, path in keys.items() if key not in told}
        if news:
            self._write(sorted(told | set(keys)))
        return news

    def _read(self) -> set[str]:
        try:
            with open(self.path, encoding="utf-8") as file:
                told = json.load(file)
            return set(told) if isinstance(told, list) else set()
        except (OSError, ValueError):
            return set()

    def _write(self, told: list[str]) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as file:
                json.dump(told[-1000:], file)
        except OSError:
            pass  # at worst the model is told again


def _conflict_key(path: str, state: Mapping[str, Any]) -> str:
    """One conflict (a later one on the same path is news again)."""
    conflict = state.get("conflict") or {}
    return f"{path}@{conflict.get('seq', 0)}@{conflict.get('detectedAt', '')}"


def conflict_report(conflicts: Mapping[str, Any]) -> str:
    lines = ["sprintdeck: these files changed without the write lock it takes to change them; the operator "
             "sees them as conflicts. If you changed them (with Bash, say), tell the operator or revert; "
             "before changing a file, take its lock (edit it with Edit/Write, or call acquire_lock)."]
    for path, state in sorted(conflicts.items()):
        conflict = state.get("conflict") or {}
        holders = ", ".join(h.get("agentId", "?") for h in conflict.get("holders") or [])
        lines.append(f"- {path}: {conflict.get('detail') or conflict.get('reason', 'conflict')}"
                     + (f" (locked by {holders})" if holders else ""))
    text = "\n".join(lines)
    return text if len(text) <= MAX_CONTEXT else text[: MAX_CONTEXT - 20] + "\n... (more)"


# ---------------------------------------------------------------- the session's life


def session_start(call: Call) -> dict[str, Any]:
    """Join (binding this session to the agent) and tell the model who it is and how to work."""
    try:
        with call.link() as link:
            text = briefing(link.welcome)
    except Refused as exc:
        text = f"sprintdeck refused this Claude Code session: {exc}. Edits of workspace files will be denied."
    except (NotConfigured, Unreachable) as exc:
        text = f"sprintdeck: {exc}. Edits of workspace files will be " + ("allowed unchecked." if call.fail_open else "denied until it answers.")
    return {"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text[:MAX_CONTEXT]}}


def briefing(welcome: Mapping[str, Any]) -> str:
    agent = welcome.get("agent") or {}
    lines = [f"You are agent {welcome.get('agentId')} of the sprintdeck sprint {welcome.get('sprint')!r}."]
    if agent.get("role"):
        lines.append(f"Your role: {agent['role']}")
    if agent.get("capabilities"):
        lines.append(f"Your capabilities: {', '.join(agent['capabilities'])}.")
    work = welcome.get("assignments") or []
    if work:
        lines.append("Your assignment: " + "; ".join(f"task {w['taskId']} (attempt {w['attempt']}): {w['title']}" for w in work) + ".")
    else:
        lines.append("You have no task yet: call the MCP tool list_tasks, then claim_task.")
    lines.append("How to work: every edit (Write, Edit, NotebookEdit) takes a write lock on its file through "
                 "sprintdeck; an edit of a file another agent holds is denied with who holds it - then work on "
                 "other files, queue with acquire_lock and wait_seconds, or send_message to the holder. Report "
                 "progress with report_progress; end each task with complete_task, or fail_task with the reason.")
    return "\n".join(lines)


def notification(call: Call) -> None:
    """Claude Code waits for a human (a permission prompt, an idle prompt): the dashboard shows it."""
    message = str(call.data.get("message") or "Claude Code needs your attention")
    with call.link() as link:
        link.tell("agent_busy", {"reason": f"waiting for a human: {message}"[:500]})


def stop(call: Call) -> dict[str, Any] | None:
    """Once, keep the model from stopping with a task it holds unfinished."""
    if call.data.get("stop_hook_active"):
        return None
    with call.link() as link:
        welcome = link.welcome
    if (welcome.get("agent") or {}).get("kind") == "claude":
        return None  # the manager ends the task from the run's result
    work = welcome.get("assignments") or []
    if not work:
        return None
    tasks = "; ".join(f"task {w['taskId']} (attempt {w['attempt']}): {w['title']}" for w in work)
    return {"decision": "block",
            "reason": f"sprintdeck: you still hold {tasks}. Before you stop, call complete_task if it is done, or "
                      "fail_task with the reason (retryable true hands it back to the sprint) if you cannot finish it."}


def session_end(call: Call) -> None:
    """The session is over: its agent leaves in good order (locks released, claims handed back)."""
    with call.link() as link:
        if (link.welcome.get("agent") or {}).get("kind") == "claude":
            return  # a run the manager started: the manager ends it
        reason = str(call.data.get("reason") or "ended")
        link.tell("agent_leave", {"reason": f"Claude Code session {reason}"})


# ---------------------------------------------------------------- the command


EVENTS: dict[str, Callable[[Call], dict[str, Any] | None]] = {
    "session-start": session_start,
    "pre-tool-use": pre_tool_use,
    "post-tool-use": post_tool_use,
    "notification": notification,
    "stop": stop,
    "session-end": session_end,
}


def read_input(stream: BinaryIO) -> dict[str, Any]:
    data = stream.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise BadInput(f"the hook input on stdin is over {MAX_INPUT // (1024 * 1024)} MiB")
    if not data.strip():
        raise BadInput("no hook input on stdin (Claude Code sends the event as a JSON object)")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput("the hook input on stdin is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"the hook input on stdin is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(value, dict):
        raise BadInput(f"the hook input on stdin should be a JSON object, not {type(value).__name__}")
    return value


def run(argv: list[str], stdin: BinaryIO, environ: Mapping[str, str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one hook call; what `main` prints, testable without a process."""
    if len(argv) != 1 or argv[0] not in EVENTS:
        given = " ".join(argv) or "nothing"
        return 1, "", f"sprintdeck hook: unknown event {given!r}; events: {', '.join(EVENTS)}\n"
    event = argv[0]
    try:
        call = Call(event, read_input(stdin), environ)
        output = EVENTS[event](call)
    except BadInput as exc:
        if event == "pre-tool-use" and isinstance(exc, BadSetting):
            return 0, json.dumps(deny(f"sprintdeck: {exc}")), ""
        return 1, "", f"sprintdeck hook {event}: {exc}\n"
    except (NotConfigured, Unreachable, Refused) as exc:
        return 0, "", f"sprintdeck hook {event}: {exc}\n"  # nothing to decide: Claude Code goes on
    except Exception as exc:  # a bug here must not become a traceback in the user's session
        if event == "pre-tool-use":
            return 0, json.dumps(deny(f"sprintdeck hook failed ({type(exc).__name__}: {exc}); the edit is refused")), ""
        return 1, "", f"sprintdeck hook {event}: internal error: {type(exc).__name__}: {exc}\n"
    return 0, (json.dumps(output) if output else ""), ""


def main(argv: list[str]) -> int:
    code, out, err = run(argv, sys.stdin.buffer, os.environ)
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if err:
        sys.stderr.write(err)
    return code
