"""`sprintdeck export PLAN --format mermaid|dot|json|svg|png [--output FILE]`: the task DAG for
other tools, or as a picture drawn by Graphviz.

A bad plan prints its problems on stderr (as `validate` does) and exits 2. Mermaid draws at most
500 edges and 50,000 characters per diagram: a bigger graph is written as several diagrams to
`--output`'s FILE-1, FILE-2, ... and refused on stdout (exit 4), where one diagram is expected.
A picture needs
Graphviz's `dot`: without it the command says what to install and exits 5; a `dot` that fails or
overruns its timeout (`SPRINTDECK_DOT_TIMEOUT` seconds, default 60) is named with the plan, exit 6.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.commands.validate import EXIT_BAD_INPUT, EXIT_OK, load
from engine.export import (
    MERMAID_MAX_EDGES,
    MERMAID_MAX_TEXT,
    MermaidTooLarge,
    mermaid_diagrams,
    mermaid_size,
    to_dot,
    to_json,
    to_mermaid,
)
from engine.graphviz import (
    DOT_TIMEOUT,
    PICTURE_FORMATS,
    GraphvizFailed,
    GraphvizMissing,
    GraphvizTimedOut,
    render,
)
from engine.plan import Plan

EXIT_TOO_BIG_FOR_MERMAID = 4  # over Mermaid's limits for one diagram, and no --output for several
EXIT_NO_GRAPHVIZ = 5  # a picture was asked for and there is no `dot` to draw it
EXIT_GRAPHVIZ_FAILED = 6  # `dot` failed or ran past its timeout
TEXT_FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "json": to_json}
FORMATS = (*TEXT_FORMATS, *PICTURE_FORMATS)


class ExportRefused(Exception):
    """The export cannot be made as asked; `code` is the exit code, the message says why."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def main(args: argparse.Namespace) -> int:
    fmt = getattr(args, "format", None) or "mermaid"
    output = getattr(args, "output", None)
    if fmt not in FORMATS:
        print(f"sprintdeck export: unknown format {fmt!r} (use {', '.join(FORMATS)})", file=sys.stderr)
        return EXIT_BAD_INPUT
    plan, problems = load(args.plan)
    if plan is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if fmt == "mermaid":
            return _mermaid(plan, args.plan, output)
        if output is None and fmt == "png" and sys.stdout.isatty():
            raise ExportRefused("a PNG is binary and stdout is a terminal: give --output FILE or "
                                "redirect stdout to a file", EXIT_BAD_INPUT)
        data = _export(plan, args.plan, fmt)
    except ExportRefused as refused:
        print(f"sprintdeck export: {refused}", file=sys.stderr)
        return refused.code
    return _write_file(Path(output), data) if output else _write_stdout(data)


def _export(plan: Plan, plan_path: str, fmt: str) -> bytes:
    """The export's bytes; a picture is the DOT export drawn by `dot`."""
    if fmt in TEXT_FORMATS:
        return TEXT_FORMATS[fmt](plan).encode()
    try:
        return render(to_dot(plan), fmt, _dot_timeout())
    except GraphvizMissing as missing:
        raise ExportRefused(f"cannot draw {plan_path} as {fmt}: {missing}", EXIT_NO_GRAPHVIZ) from None
    except GraphvizTimedOut as late:
        raise ExportRefused(f"cannot draw {plan_path} as {fmt}: {late}; SPRINTDECK_DOT_TIMEOUT=SECONDS "
                            "waits longer", EXIT_GRAPHVIZ_FAILED) from None
    except GraphvizFailed as failed:
        raise ExportRefused(f"cannot draw {plan_path} as {fmt}: {failed}", EXIT_GRAPHVIZ_FAILED) from None


def _mermaid(plan: Plan, plan_path: str, output: str | None) -> int:
    """One diagram to stdout or FILE; a graph over Mermaid's limits as parts FILE-1, FILE-2, ..."""
    try:
        diagrams = mermaid_diagrams(plan)
    except MermaidTooLarge as too_large:
        raise ExportRefused(f"cannot write {plan_path} as Mermaid: {too_large}; --format svg, png or dot "
                            "have no such limit", EXIT_TOO_BIG_FOR_MERMAID) from None
    if len(diagrams) == 1:
        data = diagrams[0].encode()
        return _write_file(Path(output), data) if output else _write_stdout(data)
    if output is None:
        edges, chars = mermaid_size(to_mermaid(plan))
        raise ExportRefused(
            f"{plan_path} is too big for one Mermaid diagram: {edges:,} edges and {chars:,} characters, "
            f"and Mermaid draws at most {MERMAID_MAX_EDGES:,} edges (maxEdges) and {MERMAID_MAX_TEXT:,} "
            "characters (maxTextSize) per diagram, subgraphs included. Give --output FILE.mmd to write it "
            f"as {len(diagrams)} diagrams (FILE-1.mmd to FILE-{len(diagrams)}.mmd), or use --format svg, "
            "png or dot, which have no such limit", EXIT_TOO_BIG_FOR_MERMAID)
    path = Path(output)
    parts = [path.with_name(f"{path.stem}-{number}{path.suffix}") for number in range(1, len(diagrams) + 1)]
    for part, diagram in zip(parts, diagrams):
        if (code := _write_file(part, diagram.encode())) != EXIT_OK:
            return code
    print(f"sprintdeck export: {plan_path} is too big for one Mermaid diagram; wrote {len(parts)} "
          f"diagrams: {', '.join(map(str, parts))} (a dependency on a task in another diagram is "
          "drawn to a dashed node naming that diagram's part)", file=sys.stderr)
    return EXIT_OK


def _dot_timeout() -> float:
    """`SPRINTDECK_DOT_TIMEOUT` (seconds), else `DOT_TIMEOUT`."""
    value = os.environ.get("SPRINTDECK_DOT_TIMEOUT")
    if not value:
        return DOT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ExportRefused(f"SPRINTDECK_DOT_TIMEOUT={value!r} is not a number of seconds above 0",
                            EXIT_BAD_INPUT)
    return seconds


def _write_file(path: Path, data: bytes) -> int:
    try:
        path.write_bytes(data)
    except OSError as error:
        print(f"sprintdeck export: cannot write {path}: {error.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _write_stdout(data: bytes) -> int:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        # `sprintdeck export big.yaml | head` closes the pipe early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
