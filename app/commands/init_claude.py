"""`sprintdeck init-claude`: prepare a checkout so that Claude Code instances join a served sprint.

It merges sprintdeck's hooks into `.claude/settings.json` and its MCP server into `.mcp.json`
(DESIGN §10), then prints the command that starts each agent.  The files stay agent-neutral - no
agent id, address or token in them - since each Claude Code process learns who it is from its
environment (`SPRINTDECK_AGENT_ID`, `SPRINTDECK_CONNECT`, `SPRINTDECK_TOKEN_FILE`): several agents
can share one checkout, and the files can be committed.

Merging never clobbers: the user's keys, hooks and servers stay as they are, ours are added only
when missing (recognised by their command), so a second run changes no byte.  Every input and both
files are checked before either file is written, and a file that is not a JSON object is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from engine.atomic_file import write_atomically
from engine.plan import PlanError, load_plan
from engine.transports.address import AddressError, parse_address
from engine.claude_wiring import HOOKS, MCP_SERVER, hook_command, hook_group, mcp_server_entry
from engine.claude_wiring import sprintdeck_executable as find_sprintdeck
from engine.transports.tokens import TOKEN_FILE_ENV



class SetupError(Exception):
    """Bad input: printed as it is (naming the file or option), exit 2, nothing written."""


@dataclass
class Setup:
    """What init-claude was asked, checked: the checkout, our command, and whom to print commands for."""

    directory: Path
    executable: str
    agents: list[str]
    connect: str | None
    token_file: Path | None


def main(args: argparse.Namespace) -> int:
    try:
        setup = _setup(args)
        settings = read_json_object(setup.directory / ".claude" / "settings.json")
        servers = read_json_object(setup.directory / ".mcp.json")
        merges = ((settings, merge_hooks), (servers, merge_server))
        changed = [file for file, merge in merges if merge(file, setup.executable)]
        for file in changed:
            file.write()
    except SetupError as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if changed:
        print(f"sprintdeck: changed {' and '.join(str(file.path) for file in changed)}")
    else:
        print(f"sprintdeck: nothing changed: {settings.path} and {servers.path} were up to date")
    _print_commands(setup, args)
    return EXIT_OK


# ---------------------------------------------------------------- inputs


def _setup(args: argparse.Namespace) -> Setup:
    directory = Path(os.path.abspath(args.dir))
    if not directory.is_dir():
        raise SetupError(f"--dir {directory} is not a directory")
    connect = None
    if args.connect:
        try:
            connect = str(parse_address(args.connect))  # a unix path made absolute
        except AddressError as exc:
            raise SetupError(f"--connect {exc}") from None
    token_file = Path(os.path.abspath(os.path.expanduser(args.token_file))) if args.token_file else None
    return Setup(directory, sprintdeck_executable(), _agents(args), connect, token_file)


def sprintdeck_executable() -> str:
    """Our console script, by absolute path, so that Claude Code finds it whatever its PATH."""
    found = find_sprintdeck()
    if found is None:
        raise SetupError(f"cannot find the sprintdeck command beside {sys.executable} or on PATH; install "
                         "sprintdeck in this environment (pip install .) and run init-claude again")
    return found


def _agents(args: argparse.Namespace) -> list[str]:
    """The agents to print a command for: `--agent`, else the plan's external agents, else none."""
    if not args.plan:
        return [args.agent] if args.agent else []
    try:
        plan = load_plan(Path(args.plan))
    except PlanError as exc:
        raise SetupError("\n".join(str(problem) for problem in exc.problems)) from None
    external = [agent.id for agent in plan.agents if agent.kind == "external"]  # those a person starts
    if args.agent and args.agent not in external:
        raise SetupError(f"--agent {args.agent!r} is not an external agent of {args.plan} "
                         f"(its external agents: {', '.join(external) or 'none'})")
    return [args.agent] if args.agent else external


# ---------------------------------------------------------------- the JSON files


JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null"}


@dataclass
class JsonFile:
    """A JSON object read from a file (an absent file is an empty object), to merge into and write."""

    path: Path
    data: dict[str, Any]

    def object_at(self, parent: dict[str, Any], key: str) -> dict[str, Any]:
        """`parent[key]`, made an empty object when absent; SetupError when it is something else."""
        value = parent.setdefault(key, {})
        if not isinstance(value, dict):
            raise SetupError(self._shape(key, "an object", value))
        return value

    def list_at(self, parent: dict[str, Any], key: str, where: str) -> list[Any]:
        value = parent.setdefault(key, [])
        if not isinstance(value, list):
            raise SetupError(self._shape(where, "an array", value))
        return value

    def write(self) -> None:
        """Two-space indentation and a final newline, whole or not at all."""
        text = json.dumps(self.data, indent=2, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, text)
        except OSError as exc:
            raise SetupError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def _shape(self, where: str, expected: str, value: Any) -> str:
        found = JSON_TYPES.get(type(value), "a number")
        return f"{self.path}: {where!r} should be {expected}, not {found}; nothing was changed"


def read_json_object(path: Path) -> JsonFile:
    """The file's object; SetupError naming the file (and the line and column) when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return JsonFile(path, {})
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SetupError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); nothing was changed") from None
    if not isinstance(data, dict):
        raise SetupError(f"{path}: should hold a JSON object, not {JSON_TYPES.get(type(data), 'a number')}; "
                         "nothing was changed")
    return JsonFile(path, data)


# ---------------------------------------------------------------- merging


def merge_hooks(settings: JsonFile, executable: str) -> bool:
    """Add each of our hooks that no group of its event runs yet, in a group of its own."""
    hooks = settings.object_at(settings.data, "hooks")
    added = False
    for event, matcher, name, timeout in HOOKS:
        groups = settings.list_at(hooks, event, f"hooks.{event}")
        command = hook_command(executable, name)
        if command in _commands(groups):
            continue
        groups.append(hook_group(matcher, command, timeout))
        added = True
    return added


def _commands(groups: list[Any]) -> set[str]:
    """Every hook command in an event's groups (entries of other shapes are not ours to judge)."""
    found = set()
    for group in groups:
        for hook in group.get("hooks", []) if isinstance(group, dict) else []:
            if isinstance(hook, dict) and isinstance(hook.get("command"), str):
                found.add(hook["command"])
    return found


def merge_server(servers: JsonFile, executable: str) -> bool:
    """Add our MCP server unless a server of that name is there (a different one is kept, and said)."""
    entries = servers.object_at(servers.data, "mcpServers")
    present = entries.get(MCP_SERVER)
    if present is None:
        entries[MCP_SERVER] = mcp_server_entry(executable)
        return True
    if not isinstance(present, dict) or present.get("command") != executable:
        print(f"sprintdeck: warning: {servers.path} already has an MCP server named {MCP_SERVER!r} that "
              f"does not run {executable}; left as it is", file=sys.stderr)
    return False


# ---------------------------------------------------------------- the commands that start agents


def shell_assignment(name: str, value: str) -> str:
    """`NAME=value` for a shell, the value quoted (quoting the whole word would make it a command)."""
    return f"{name}={shlex.quote(value)}"


def start_command(agent_id: str, connect: str | None, token_file: Path | None) -> str:
    """`SPRINTDECK_AGENT_ID=... SPRINTDECK_CONNECT=... SPRINTDECK_TOKEN_FILE=... claude`."""
    words = [shell_assignment("SPRINTDECK_AGENT_ID", agent_id)]
    if connect is not None:
        words.append(shell_assignment("SPRINTDECK_CONNECT", connect))
    if token_file is not None:
        words.append(shell_assignment(TOKEN_FILE_ENV, str(token_file)))
    return " ".join([*words, "claude"])


def _print_commands(setup: Setup, args: argparse.Namespace) -> None:
    if not setup.agents:
        print("sprintdeck: the plan has no external agents" if args.plan else
              "sprintdeck: pass --agent ID or --plan PLAN to print the command that starts each agent")
        return
    print(f"sprintdeck: start each agent in {setup.directory} with:")
    for agent_id in setup.agents:
        print(start_command(agent_id, setup.connect, setup.token_file))
    if setup.connect is None:
        print("sprintdeck: pass --connect ADDR (the address serve printed) to put SPRINTDECK_CONNECT in these commands")
    if setup.token_file is None:
        print(f"sprintdeck: pass --token-file F (serve's --token-file) to put {TOKEN_FILE_ENV} in these commands, "
              "or give each agent SPRINTDECK_TOKEN")
