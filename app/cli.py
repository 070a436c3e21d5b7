"""The `sprintdeck` command: argument parsing and dispatch to one module per subcommand.

Subcommands import their modules lazily so that `sprintdeck hook` (run on every edit by Claude
Code) starts without loading the engine or Textual.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_TASKS_FAILED, EXIT_BAD_INPUT, EXIT_JOURNAL_FAILED = 0, 1, 2, 3
EXIT_CODES = (
    "exit codes: 0 every task completed; 1 the sprint ran but tasks failed or were cancelled, or a "
    "file is left in conflict (the last line and the --json metrics' unresolvedConflicts name it); "
    "2 bad input (the message names the file, line or id); 3 the journal could not be written "
    "(a full disk): the sprint stopped, the journal is valid up to its last durable record, and "
    "--resume continues it"
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message, drop the traceback risk."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _add_sprint_options(parser: argparse.ArgumentParser) -> None:
    """What `run` and `serve` share: both run a sprint; `serve` also lets external agents connect."""
    parser.add_argument("plan")
    parser.add_argument("--headless", action="store_true", help="no dashboard; progress on stderr")
    parser.add_argument("--json", action="store_true", help="print the final state and metrics as JSON")
    parser.add_argument("--record", metavar="PATH", help="journal path (default .sprintdeck/runs/...)")
    parser.add_argument("--seed", type=int, default=0, help="seed for simulated agents")
    parser.add_argument("--workspace", metavar="DIR", help="work in DIR instead of a scratch copy")
    parser.add_argument("--speed", type=float, default=None, help="simulated time factor (default 20)")
    parser.add_argument("--theme", default=None, help="dashboard theme")
    parser.add_argument("--resume", metavar="JOURNAL", help="continue a crashed sprint from its journal")
    parser.add_argument("--at", type=int, default=None, metavar="SEQ",
                        help="with --resume JOURNAL and --record NEW: fork JOURNAL at event SEQ into a new "
                             "live sprint recorded in NEW (JOURNAL is left untouched)")


def _add_nats_options(parser: argparse.ArgumentParser) -> None:
    """How `serve` and `agent` log in to a NATS server (with a nats:// address), passed to nats-py."""
    nats = parser.add_argument_group("NATS (with a nats:// address)")
    nats.add_argument("--nats-user", metavar="USER", help="NATS user name (with --nats-password)")
    nats.add_argument("--nats-password", metavar="PASSWORD", help="NATS password (or set SPRINTDECK_NATS_PASSWORD)")
    nats.add_argument("--nats-token", metavar="TOKEN", help="NATS authentication token (or set SPRINTDECK_NATS_TOKEN)")
    nats.add_argument("--nats-creds", metavar="FILE", help="NATS credentials file (JWT and NKey seed)")
    nats.add_argument("--nats-tls-ca", metavar="FILE", help="CA certificate to verify the NATS server with (TLS)")
    nats.add_argument("--nats-tls-cert", metavar="FILE", help="client certificate for NATS TLS")
    nats.add_argument("--nats-tls-key", metavar="FILE", help="client key for --nats-tls-cert")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sprintdeck", description="Coordinate coding agents working on one repository.",
                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a sprint plan (dashboard, or --headless)", epilog=EXIT_CODES)
    _add_sprint_options(run)
    run.add_argument("--keep-workspace", action="store_true",
                     help="keep the scratch copy after the run (it is removed once the sprint finished)")

    replay = sub.add_parser("replay", help="step through a recorded sprint (dashboard, or --headless)")
    replay.add_argument("journal")
    replay.add_argument("--headless", action="store_true", help="no dashboard")
    replay.add_argument("--json", action="store_true", help="print the state and metrics at --at as JSON")
    replay.add_argument("--at", type=int, default=None, metavar="SEQ", help="event to stop at (default: the end)")
    replay.add_argument("--theme", default=None, help="dashboard theme")

    diff = sub.add_parser("diff", help="the first event at which two recordings of one plan diverge")
    diff.add_argument("journal_a")
    diff.add_argument("journal_b")
    diff.add_argument("--json", action="store_true", help="the fork point and the first divergence as one JSON object")

    log = sub.add_parser(
        "log", help="the seed's ActivityLog of a recorded sprint: who did what, how long, whether it worked",
        description="Print the activity log derived from a journal (read only): timestamp, agentId, action, "
                    "resourceId, taskId, duration (ms), success, error. --json writes JSON lines: one object per "
                    "entry with the seed's field names (plus seq and detail), absent values left out.")
    log.add_argument("journal")
    log.add_argument("--json", action="store_true", help="JSON lines, one ActivityLog entry per line")
    log.add_argument("--agent", metavar="ID", help="only this agent's entries")
    log.add_argument("--task", metavar="ID", help="only this task's entries")

    validate = sub.add_parser("validate", help="check a sprint plan")
    validate.add_argument("plan")
    validate.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run a sprint whose external agents connect over a socket", epilog=EXIT_CODES)
    _add_sprint_options(serve)
    serve.add_argument("--listen", required=True, metavar="ADDR",
                       help="unix:PATH, tcp:HOST:PORT (loopback) or nats://HOST:PORT (a NATS server's)")
    serve.add_argument("--token-file", metavar="PATH",
                       help="keep the agents' tokens in this JSON file (read, or created 0600 when absent)")
    serve.add_argument("--spawn", action="store_true",
                       help="start the plan's external agents as `sprintdeck agent` processes and restart one that dies")
    _add_nats_options(serve)

    agent = sub.add_parser("agent", help="be one external agent of a served sprint, in this process")
    agent.add_argument("--connect", required=True, metavar="ADDR", help="the address serve printed")
    agent.add_argument("--id", required=True, help="the agent id in the plan")
    agent.add_argument("--token-file", metavar="F",
                       help="a token file serve wrote (or set SPRINTDECK_TOKEN or SPRINTDECK_TOKEN_FILE)")
    agent.add_argument("--workspace", metavar="DIR", help="run commands in DIR (default: the server's workspace)")
    agent.add_argument("--simulate", action="store_true", help="simulate the work instead of running commands")
    agent.add_argument("--give-up-after", type=float, default=300.0, metavar="SECONDS",
                       help="stop when no server answers for this long (default 300; 0 never)")
    _add_nats_options(agent)

    watch = sub.add_parser("watch", help="the dashboard attached to a running serve (read-only without --token-file)")
    watch.add_argument("address", metavar="ADDR",
                       help="the address serve printed (unix:PATH, tcp:HOST:PORT or nats://HOST:PORT/SPRINT)")
    watch.add_argument("--token-file", metavar="F", help="serve's operator token file: the operator keys work")
    watch.add_argument("--name", help="the operator's name in the journal (default: the login name)")
    watch.add_argument("--headless", action="store_true", help="no dashboard: follow the sprint to its end")
    watch.add_argument("--json", action="store_true", help="with --headless: the final state and metrics, as serve --json")
    watch.add_argument("--theme", default=None, help="dashboard theme")
    _add_nats_options(watch)

    web = sub.add_parser("web", help="the watch dashboard in a browser: each page runs its own `sprintdeck watch ADDR`")
    web.add_argument("address", metavar="ADDR", help="the address serve printed, passed to watch as is")
    web.add_argument("--port", type=int, default=8000, help="the HTTP port (default 8000; 0 picks a free one)")
    web.add_argument("--host", default="127.0.0.1",
                     help="the interface to listen on (default 127.0.0.1; any other is warned about: "
                          "whoever reaches it holds the page's token)")
    web.add_argument("--token-file", metavar="F", help="serve's operator token file: the pages' operator keys work")
    web.add_argument("--theme", default=None, help="dashboard theme")
    _add_nats_options(web)

    claude = sub.add_parser("init-claude", help="add sprintdeck's hooks and MCP server to a checkout for Claude Code")
    claude.add_argument("--connect", metavar="ADDR", help="the address serve printed, for the printed commands")
    claude.add_argument("--agent", metavar="ID", help="print the command that starts this agent")
    claude.add_argument("--plan", metavar="PLAN", help="print the command that starts each external agent of PLAN")
    claude.add_argument("--token-file", metavar="F", help="serve's --token-file, for the printed commands")
    claude.add_argument("--dir", default=".", metavar="DIR", help="the checkout to prepare (default: here)")

    hook = sub.add_parser("hook", help="Claude Code's hook command (init-claude installs it): EVENT's JSON on stdin")
    hook.add_argument("event", choices=["session-start", "pre-tool-use", "post-tool-use", "notification", "stop",
                                        "session-end"])
    sub.add_parser("mcp", help="the MCP server of a Claude Code agent (stdio; who it is comes from SPRINTDECK_* variables)")

    export = sub.add_parser(
        "export", help="print the task DAG (text for other tools, or a picture drawn by Graphviz)",
        epilog="exit codes: 0 written; 2 bad input (a bad plan: its problems name file and line); 4 too big for "
               "one Mermaid diagram (give --output FILE to write several); 5 svg or png asked for and "
               "Graphviz's `dot` is not installed; 6 `dot` failed or ran past SPRINTDECK_DOT_TIMEOUT seconds "
               "(default 60)")
    export.add_argument("plan")
    export.add_argument("--format", choices=["mermaid", "dot", "json", "svg", "png"], default="mermaid",
                        help="svg and png are the dot export drawn by Graphviz's `dot` (default: mermaid)")
    export.add_argument("--output", metavar="FILE", help="write FILE instead of stdout")

    return parser


COMMANDS = {
    "run": "app.commands.run",
    "validate": "app.commands.validate",
    "export": "app.commands.export",
    "replay": "app.commands.replay",
    "diff": "app.commands.diff",
    "log": "app.commands.log",
    "serve": "app.commands.serve",
    "agent": "app.commands.agent",
    "watch": "app.commands.watch",
    "web": "app.commands.web",
    "init-claude": "app.commands.init_claude",
    "mcp": "app.mcp_server",
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["hook"]:  # on every edit of every Claude Code agent: no argparse, no engine
        from app.hook import main as hook_main

        return hook_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    module = importlib.import_module(COMMANDS[args.command])
    try:
        code = int(module.main(args))
        sys.stdout.flush()  # a reader that left shows here, inside the try, not in the exit's flush
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left early (`| head`): stop quietly, not with a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush would fail again
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
