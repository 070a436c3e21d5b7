"""`sprintdeck hook pre-tool-use` end to end, as Claude Code runs it before every edit (issue 13).

One real manager, a `sprintdeck serve` process, serves two external agents on a Unix socket; alpha
holds src/shared.py.  Each sample is a whole process, from spawn to exit with its decision printed:
- grant: alpha's hook for its own file (re-asked: granted, nothing printed);
- deny: beta's hook for alpha's file (the deny JSON naming alpha and its task);
- the floors, with the same interpreter in the same run: `python -c pass` and `python -S -c pass`.
The four alternate in blocks so that drift on a shared machine hits all alike.  The hook runs as
the `sprintdeck` console script that `init-claude` installs, exactly the command Claude Code runs.

Figures are printed, never asserted.  Usage:
    .venv/bin/python benchmarks/bench_hook.py [--calls 200] [--block 20]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPRINTDECK = str(Path(sys.executable).with_name("sprintdeck"))
PLAN = {
    "sprint": "bench-hook",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "600s", "lock_ttl": "600s"},
    "agents": [{"id": "alpha", "kind": "external"}, {"id": "beta", "kind": "external"}],
    "tasks": [{"id": "keep-alpha-busy", "agent": "alpha"}, {"id": "keep-beta-busy", "agent": "beta"}],
}


def start_serve(directory: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    (directory / "plan.json").write_text(json.dumps(PLAN))
    (directory / "ws" / "src").mkdir(parents=True)
    (directory / "ws" / "src" / "shared.py").write_text("x = 1\n")
    address = f"unix:{directory}/s/deck.sock"
    tokens = directory / "tokens.json"
    serve = subprocess.Popen(
        [SPRINTDECK, "serve", str(directory / "plan.json"), "--listen", address, "--headless", "--token-file",
         str(tokens), "--workspace", str(directory / "ws"), "--record", str(directory / "journal.jsonl")],
        cwd=ROOT, stderr=(directory / "serve.log").open("w"),
    )
    deadline = time.monotonic() + 30
    while not (directory / "s/deck.sock").exists() or not tokens.exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start: {(directory / 'serve.log').read_text()}")
        time.sleep(0.05)
    return serve, address, tokens


def hook_call(directory: Path, address: str, tokens: Path, agent: str) -> tuple[list[str], bytes, dict[str, str]]:
    stdin = json.dumps({
        "session_id": f"S-{agent}", "cwd": str(directory / "ws"), "hook_event_name": "PreToolUse", "tool_name": "Edit",
        "tool_input": {"file_path": str(directory / "ws" / "src" / "shared.py"), "old_string": "1", "new_string": "2"},
        "tool_use_id": "toolu_bench", "permission_mode": "default",
    }).encode()
    env = {**os.environ, "SPRINTDECK_AGENT_ID": agent, "SPRINTDECK_CONNECT": address,
           "SPRINTDECK_TOKEN_FILE": str(tokens), "CLAUDE_PROJECT_DIR": str(directory / "ws")}
    return [SPRINTDECK, "hook", "pre-tool-use"], stdin, env


def timed(command: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, env=env, capture_output=True, check=False)
    return time.perf_counter() - started, done.stdout


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--block", type=int, default=20)
    args = parser.parse_args()
    # Bytecode as an installed package has it (pip compiles on install; this machine's environment
    # may say PYTHONDONTWRITEBYTECODE, which would make every hook call compile its modules again).
    compileall.compile_dir(ROOT / "app", quiet=1)
    with tempfile.TemporaryDirectory(prefix="bh-", dir="/tmp") as name:
        directory = Path(name)
        serve, address, tokens = start_serve(directory)
        try:
            grant = hook_call(directory, address, tokens, "alpha")
            deny = hook_call(directory, address, tokens, "beta")
            assert timed(*grant)[1] == b"", "alpha's first edit should be granted"
            assert b'"deny"' in timed(*deny)[1] and b"alpha" in timed(*deny)[1], "beta's edit should be denied"
            cases = {
                "python -c pass": ([sys.executable, "-c", "pass"], b"", dict(os.environ)),
                "python -S -c pass": ([sys.executable, "-S", "-c", "pass"], b"", dict(os.environ)),
                "hook: grant (nothing printed)": grant,
                "hook: deny (reason printed)": deny,
            }
            samples: dict[str, list[float]] = {case: [] for case in cases}
            for _ in range(args.calls // args.block):
                for case, call in cases.items():
                    samples[case] += [timed(*call)[0] for _ in range(args.block)]
        finally:
            serve.terminate()
            serve.wait()
    floor = statistics.median(samples["python -c pass"]) * 1000
    print(f"hook end to end, {args.calls} calls each, CPython {platform.python_version()}, {os.cpu_count()} cores")
    print(f"{'case':34} {'p50 ms':>8} {'p95 ms':>8} {'p50 / python -c pass':>22}")
    for case, values in samples.items():
        p50 = statistics.median(values) * 1000
        print(f"{case:34} {p50:8.1f} {pct(values, 95):8.1f} {p50 / floor:21.2f}x")


if __name__ == "__main__":
    main()
