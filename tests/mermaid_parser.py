"""Mermaid's own parser, run by node, for tests: does Mermaid accept this diagram text?

    verdicts = mermaid_verdicts([text_a, text_b])   # one node process for all of them
    assert verdicts == [None, None], verdicts       # None: accepted; else Mermaid's message

The parser is the `mermaid` npm package's `mermaid.parse` (the same code a browser, GitHub or
`mmdc` runs before drawing, including the flowchart's `maxEdges` check), with a jsdom window
for the DOMPurify it sanitizes labels with. `mermaid.parse` leaves one limit to the renderer:
text over `maxTextSize` characters is drawn as "Maximum text size in diagram exceeded" instead
of the diagram; the helper refuses such text too, with the limit read from Mermaid's own config.

The packages are found by `find_mermaid_modules`: `SPRINTDECK_MERMAID_MODULES` (a node_modules
directory), else the repository's `.cache/npm/node_modules`, which `.ci/run` fills (pinned
versions, the way it installs Claude Code). A missing node or package fails the test with how to
install it: these tests are the proof that the Mermaid export renders, so they are never skipped.

Standard library only (and pytest, to fail a test).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_MODULES = Path(".cache/npm/node_modules")
PACKAGES = ("mermaid@11.17.2", "jsdom@26.1.0")  # .ci/run installs these; Debian's node 20 runs them
INSTALL_HINT = (f"install them with `npm install --prefix .cache/npm {' '.join(PACKAGES)}` in the "
                "repository, or run `.ci/run`, which does that")
TIMEOUT = 120.0

# Reads a JSON list of diagram texts on stdin; prints {"mermaid": version, "maxTextSize": N,
# "maxEdges": N, "verdicts": [null | "why it was refused", ...]}.
PARSE_SCRIPT = r"""
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
const modules = process.env.MERMAID_NODE_MODULES;
const load = (path) => import(pathToFileURL(`${modules}/${path}`).href);
const { JSDOM } = await load('jsdom/lib/api.js');
const { window } = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await load('mermaid/dist/mermaid.core.mjs');
const config = mermaid.mermaidAPI.getConfig();
const { version } = JSON.parse(readFileSync(`${modules}/mermaid/package.json`, 'utf8'));
const verdicts = [];
for (const text of JSON.parse(readFileSync(0, 'utf8'))) {
  if (text.length > config.maxTextSize) {
    verdicts.push(`Maximum text size in diagram exceeded: ${text.length} characters, ` +
                  `over maxTextSize ${config.maxTextSize}`);
    continue;
  }
  try {
    await mermaid.parse(text);
    verdicts.push(null);
  } catch (error) {
    verdicts.push(String(error?.message ?? error));
  }
}
process.stdout.write(JSON.stringify({ mermaid: version, maxTextSize: config.maxTextSize,
                                      maxEdges: config.maxEdges, verdicts }));
"""


class MermaidNotFound(Exception):
    """No node, or no mermaid and jsdom packages, where the tests look for them."""


def find_mermaid_modules(environ: Mapping[str, str] = os.environ, root: Path = ROOT) -> Path:
    """The node_modules directory holding `mermaid` and `jsdom`."""
    override = environ.get("SPRINTDECK_MERMAID_MODULES")
    modules = Path(override) if override else root / LOCAL_MODULES
    missing = [name.rsplit("@", 1)[0] for name in PACKAGES
               if not (modules / name.rsplit("@", 1)[0] / "package.json").is_file()]
    if missing:
        where = f"SPRINTDECK_MERMAID_MODULES={override}" if override else str(modules)
        raise MermaidNotFound(f"no {' and '.join(missing)} in {where}: {INSTALL_HINT}")
    return modules


def find_node(environ: Mapping[str, str] = os.environ) -> str:
    found = shutil.which("node", path=environ.get("PATH"))
    if found is None:
        raise MermaidNotFound("node is not installed (Debian: `sudo apt-get install nodejs npm`), "
                              f"and Mermaid's parser runs on it; then {INSTALL_HINT}")
    return found


def mermaid_limits() -> dict[str, int]:
    """Mermaid's own `maxEdges` and `maxTextSize`, as its configuration has them."""
    report = _run([])
    return {"maxEdges": report["maxEdges"], "maxTextSize": report["maxTextSize"]}


def mermaid_verdicts(texts: Sequence[str]) -> list[str | None]:
    """For each text, None if Mermaid accepts it, else Mermaid's reason for refusing it."""
    return list(_run(texts)["verdicts"])


def _run(texts: Sequence[str]) -> dict[str, Any]:
    try:
        node, modules = find_node(), find_mermaid_modules()
    except MermaidNotFound as missing:
        pytest.fail(str(missing), pytrace=False)
    result = subprocess.run([node, "--input-type=module", "-e", PARSE_SCRIPT], input=json.dumps(list(texts)),
                            capture_output=True, text=True, timeout=TIMEOUT, check=False,
                            env={**os.environ, "MERMAID_NODE_MODULES": str(modules.resolve())})
    if result.returncode != 0:
        pytest.fail(f"Mermaid's parser did not run (node exit {result.returncode}):\n{result.stderr[-3000:]}",
                    pytrace=False)
    report: dict[str, Any] = json.loads(result.stdout)
    return report
