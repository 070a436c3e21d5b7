"""`sprintdeck validate PLAN [--json]`: check a plan and list every problem with its line.

Exit 0 when the plan is valid, 2 when it is not (the CLI's "bad input"). Problems go to stderr as
`PLAN:LINE: message`, PLAN spelled as the user typed it so editors and terminals can jump to it.
"""

from __future__ import annotations

import argparse
import sys

from engine.plan import Plan, PlanError, Problem, load_plan

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def load(path: str) -> tuple[Plan | None, list[Problem]]:
    """The plan, or its problems.

    A bug of ours must not reach the user as a traceback either (the command's contract is
    `PLAN:LINE: message`), so anything unexpected is reported as a problem on line 1.
    """
    try:
        return load_plan(path), []
    except PlanError as err:
        return None, err.problems
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return None, [Problem(path, 1, f"internal error while loading the plan: {type(exc).__name__}: {exc}")]


def main(args: argparse.Namespace) -> int:
    plan, problems = load(args.plan)
    if getattr(args, "json", False):
        import json  # only here: validate's start-up is budgeted (tests/test_startup_imports.py)

        report = {"valid": not problems, "problems": [problem.to_dict() for problem in problems]}
        print(json.dumps(report, indent=2))
    elif problems:
        for problem in problems:
            print(problem, file=sys.stderr)
    else:
        assert plan is not None
        print(f"{args.plan}: ok ({len(plan.agents)} agents, {len(plan.tasks)} tasks)")
    return EXIT_BAD_INPUT if problems else EXIT_OK
