#!/usr/bin/env python3
"""A sprint agent written from the protocol alone: JSON lines over a socket, standard library only.

It uses nothing of sprintdeck's code, only what the seed (docs: SEED.md's IPCMessage, AgentConfig
and message types) and DESIGN §3 say travels on the wire, so it shows what any client in any
language must do - and, as the sample's `reviewer`, it sends every message type of the seed:

1. connect and send `agent_ready` with its AgentConfig and token (`requiresResponse`); the answer
   is a `broadcast_info` "welcome" (or an `agent_error` naming the field it refused);
2. heartbeat at the interval the welcome names, and ask for the lock table to be pushed to it
   (`state_request` with `subscribe`; `state_sync` arrives after every change);
3. for each `task_assign`: report progress (`task_update`); ask for a write lock on its review
   file inside the build without waiting (`resource_lock`, refused with `resource_conflict` while
   the builder's lock on `build` covers it), say it waits (`agent_busy`) and wait for it; write
   the review and report the file (`state_update`, fenced with the grant's lockId and token);
   release it (`resource_unlock`); ask the builder, through the manager, how the build went
   (`request_assistance`, answered with `provide_assistance`); then `task_complete`.
   With `--fail-first` the first attempt of each task reports an error of its own
   (`agent_error`) and fails (`task_failed`), to show a retry; it then says it is ready again
   (`agent_ready`), which the manager waits for before it gives the agent more work.
4. answer a peer's `request_assistance` with what it knows (`provide_assistance`), and stop
   when the manager's `broadcast_info` says the sprint has finished.

    python3 seed_agent.py --connect unix:PATH --id reviewer --token-file TOKEN_FILE --capabilities review

Exit codes: 0 the sprint finished, 1 the connection was lost, 2 refused (wrong token, say).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

MANAGER = "sprint_manager"
REVIEW_FILE = "build/review.txt"
REQUEST_TIMEOUT = 30.0  # seconds to wait for any reply
RECOVERY = 0.5  # seconds between reporting an error of its own and being ready again


class Link:
    """One connection: lines out under a lock, a reader thread routing replies by correlationId."""

    def __init__(self, address: str, agent_id: str) -> None:
        kind, _, where = address.partition(":")
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(where)
        else:
            host, _, port = where.rpartition(":")
            self.sock = socket.create_connection((host, int(port)))
        self.agent_id = agent_id
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._write = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, kind: str, payload: dict[str, Any], *, to: str = MANAGER, priority: str = "medium",
             correlation_id: str | None = None, timeout_ms: int | None = None) -> str:
        message: dict[str, Any] = {
            "id": str(uuid.uuid4()), "type": kind, "from": self.agent_id, "to": to,
            "timestamp": datetime.now(timezone.utc).isoformat(), "payload": payload, "priority": priority,
        }
        if timeout_ms is not None:
            message["requiresResponse"], message["responseTimeout"] = True, timeout_ms
            self._replies[message["id"]] = queue.Queue()
        if correlation_id is not None:
            message["correlationId"] = correlation_id
        with self._write:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        return str(message["id"])

    def request(self, kind: str, payload: dict[str, Any], *, timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """Send with requiresResponse and wait for the one reply carrying its id."""
        message_id = self.send(kind, payload, priority="high", timeout_ms=int(timeout * 1000))
        try:
            return self._replies[message_id].get(timeout=timeout)
        except queue.Empty:
            raise SystemExit(f"{self.agent_id}: no reply to {kind} within {timeout:g}s") from None
        finally:
            del self._replies[message_id]

    def _read(self) -> None:
        for line in self.sock.makefile("rb"):
            message = json.loads(line)
            waiting = self._replies.get(message.get("correlationId") or "")
            (waiting if waiting is not None else self.inbox).put(message)
        self.inbox.put(None)


class SeedAgent:
    def __init__(self, link: Link, args: argparse.Namespace, welcome: dict[str, Any]) -> None:
        self.link, self.id, self.args = link, link.agent_id, args
        self.workspace = args.workspace or welcome["workspace"]
        self.locks: dict[str, Any] = {}  # the manager's lock table, as last pushed
        self.notes: dict[str, str] = {}
        self.running: list[str] = []

    def say(self, text: str) -> None:
        print(f"{self.id}: {text}", file=sys.stderr, flush=True)

    def heartbeat(self, interval: float) -> None:
        while True:
            self.link.send("heartbeat", {"tasks": list(self.running), "load": len(self.running)})
            time.sleep(interval)

    def serve(self) -> int:
        """Read what the manager sends until the sprint finishes."""
        sync = self.link.request("state_request", {"sections": ["locks"], "subscribe": True})
        self.locks = sync["payload"]["state"].get("locks", {})
        while (message := self.link.inbox.get()) is not None:
            kind, payload = message["type"], message["payload"]
            if kind == "broadcast_info" and message["from"] == MANAGER and payload["info"] == "sprint_finished":
                self.say("the sprint has finished")
                return 0
            if kind == "broadcast_info":
                self.say(f"news from {message['from']}: {payload['info']} {json.dumps(payload.get('data') or {})}")
            elif kind == "state_sync":
                self.locks = payload["state"].get("locks", self.locks)
            elif kind == "task_assign":
                threading.Thread(target=self.execute_task, args=(payload,), daemon=True).start()
            elif kind == "request_assistance":
                self.provide_assistance(message)
            elif kind == "agent_error":
                self.say(f"the manager refused something: {payload['error']}")
        self.say("the connection was lost")
        return 1

    # ------------------------------------------------------------ the seed's Agent methods

    def request_resource_lock(self, resource_id: str, lock_type: str, wait_ms: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"resourceId": resource_id, "lockType": lock_type}
        if wait_ms is not None:
            payload["waitMs"] = wait_ms
        return self.link.request("resource_lock", payload, timeout=REQUEST_TIMEOUT + (wait_ms or 0) / 1000)

    def execute_task(self, task: dict[str, Any]) -> None:
        base = {"taskId": task["taskId"], "attempt": task["attempt"]}
        self.running.append(task["taskId"])
        try:
            self.review(task, base)
        except (Exception, SystemExit) as exc:  # the attempt fails with the reason, the agent goes on
            self.link.send("task_failed", {**base, "error": str(exc), "retryable": True})
        finally:
            self.running.remove(task["taskId"])

    def review(self, task: dict[str, Any], base: dict[str, Any]) -> None:
        """Sign the build with a review, then ask the builder how the build went."""
        self.link.send("task_update", {**base, "progress": 0.0, "message": "reviewing the build"})
        grant = self.lock_review_file(task)
        try:
            with open(os.path.join(self.workspace, "build", "greet"), "rb") as file:
                build = "sha256:" + hashlib.sha256(file.read()).hexdigest()
            failing = self.args.fail_first and task["attempt"] == 1
            if not failing:
                self.write_review(task, grant, build)
        finally:
            released = self.link.request("resource_unlock", {"resourceId": REVIEW_FILE, "lockId": grant["lockId"]})
            if released["type"] != "resource_unlock":
                self.say(f"could not release {REVIEW_FILE}: {released['payload']}")
        if failing:
            error = f"first attempt of {task['taskId']} fails on purpose (--fail-first)"
            self.link.send("agent_error", {"error": error})
            self.link.send("task_failed", {**base, "error": error, "retryable": True})
            time.sleep(RECOVERY)  # the dashboard shows it in error meanwhile, and gives it no work
            self.link.send("agent_ready", {"agentId": self.id, "capabilities": self.args.capabilities})
            return
        answer = self.link.request("request_assistance", {"topic": "how did the build go?", "taskId": "build"},
                                   timeout=10.0)
        said = answer["payload"]
        self.say(f"asked for help, {said.get('agentId') or 'nobody'} answered: {said['details']}")
        self.link.send("task_update", {**base, "progress": 1.0, "message": f"{REVIEW_FILE} written"})
        self.link.send("task_complete", {**base, "result": {"review": REVIEW_FILE, "help": said["details"]},
                                         "locks": task.get("locks", [])})
        self.notes[task["taskId"]] = f"reviewed build/greet {build}"

    def lock_review_file(self, task: dict[str, Any]) -> dict[str, Any]:
        """A write lock on the review file inside the build: asked without waiting first (the
        builder's lock on build covers it while the build runs), then waited for."""
        answer = self.request_resource_lock(REVIEW_FILE, "write")
        if answer["type"] == "resource_conflict":
            holder = answer["payload"]
            self.say(f"{REVIEW_FILE} is held by {holder.get('holder')} ({holder.get('holderMode')}); waiting")
            self.link.send("agent_busy", {"taskId": task["taskId"], "reason": f"waiting for {holder.get('holder')}'s build"})
            answer = self.request_resource_lock(REVIEW_FILE, "write", wait_ms=60_000)
        if answer["type"] != "resource_lock":
            raise RuntimeError(f"could not lock {REVIEW_FILE}: {answer['payload']}")
        return dict(answer["payload"])

    def write_review(self, task: dict[str, Any], grant: dict[str, Any], build: str) -> None:
        """The review file under the grant, then the report that fences it (lockId and token)."""
        text = f"build/greet {build}: reviewed by {self.id}, attempt {task['attempt']}\n"
        with open(os.path.join(self.workspace, REVIEW_FILE), "w") as file:
            file.write(text)
        checksum = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        report = {"path": REVIEW_FILE, "checksum": checksum, "lockId": grant["lockId"], "token": grant["token"],
                  "attempt": task["attempt"], "taskId": task["taskId"]}
        reply = self.link.request("state_update", report)
        if reply["type"] != "state_sync":
            raise RuntimeError(f"the report of {REVIEW_FILE} was refused: {reply['payload']}")

    def provide_assistance(self, request: dict[str, Any]) -> None:
        asked = request["payload"]
        note = self.notes.get(asked.get("taskId") or asked.get("topic"))
        self.link.send("provide_assistance", {"topic": asked.get("topic", ""), "taskId": asked.get("taskId"),
                                              "details": note or f"{self.id} knows nothing of it", "helped": note is not None},
                       to=request["from"], correlation_id=request["id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", required=True, help="unix:PATH or tcp:HOST:PORT")
    parser.add_argument("--id", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--capabilities", nargs="*", default=["review"])
    parser.add_argument("--workspace", help="default: the one the server names")
    parser.add_argument("--fail-first", action="store_true", help="fail the first attempt of each task (shows a retry)")
    args = parser.parse_args()
    with open(args.token_file) as file:
        token = file.read().strip()
    link = Link(args.connect, args.id)
    hello = {
        "agentId": args.id, "token": token, "capabilities": args.capabilities, "specializations": [],
        "resourceLimits": {"maxConcurrentTasks": 1}, "dependencies": [],
    }
    answer = link.request("agent_ready", hello, timeout=10.0)
    if answer["type"] != "broadcast_info":
        error = answer["payload"]
        print(f"{args.id}: refused: {error.get('field') or ''}: {error['error']}", file=sys.stderr)
        return 2
    welcome = answer["payload"]["data"]
    agent = SeedAgent(link, args, welcome)
    agent.say(f"joined sprint {welcome['sprint']}")
    threading.Thread(target=agent.heartbeat, args=(float(welcome["heartbeatInterval"]),), daemon=True).start()
    return agent.serve()


if __name__ == "__main__":
    sys.exit(main())
