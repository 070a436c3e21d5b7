"""`sprintdeck export PLAN --format mermaid|dot|json`: print the task DAG for other tools.

A bad plan prints its problems on stderr (as `validate` does) and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.commands.validate import EXIT_BAD_INPUT, EXIT_OK, load
from engine.export import to_dot, to_json, to_mermaid

FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "json": to_json}


def main(args: argparse.Namespace) -> int:
    render = FORMATS.get(getattr(args, "format", None) or "mermaid")
    if render is None:
        print(f"sprintdeck export: unknown format {args.format!r} (use mermaid, dot or json)", file=sys.stderr)
        return EXIT_BAD_INPUT
    plan, problems = load(args.plan)
    if plan is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        sys.stdout.write(render(plan))
        sys.stdout.flush()
    except BrokenPipeError:
        # `sprintdeck export big.yaml | head` closes the pipe early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
