"""A journal that cannot be written stops the sprint; replay never writes; paths that are no journal (issue 14, defect 7).

A full disk is made real per process with RLIMIT_FSIZE: the kernel refuses any write past the
limit with EFBIG (SIGXFSZ, which would kill the process instead, is ignored), exactly where a full
disk refuses with ENOSPC, after a partial write.  It needs no root and no mount, and it hits every
file the process writes, as a full disk does.  The writer handles both errors the same way (one
`OSError` path, worded by `engine/os_errors.py`).  The same run on a real full disk, checked by hand
as root (`mount -t tmpfs -o size=40k tmpfs /mnt/small`, `--record /mnt/small/j.jsonl`), exits 3
with "no space left on the device (the disk is full); the journal is valid up to seq 102", and
`replay` reads those 102 records.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES
from engine.journal import read_journal

WEBRTC = SAMPLES / "webrtc" / "plan.yaml"
FILE_LIMIT = 16_384  # bytes: the webrtc sprint's journal passes it a tenth of the way in
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: both survive exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def sprintdeck(*args: object, limit: int | None = None, prefix: tuple[str, ...] = (),
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = ENV | {"PYTHONDONTWRITEBYTECODE": "1"} if limit else ENV  # a .pyc cut at the limit would break later runs
    return subprocess.run([*prefix, sys.executable, "-m", "app.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=file_size_limit(limit) if limit else None)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for Unix sockets (108 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="jf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stopped_at(stderr: str, journal: Path) -> int:
    """The durable seq the failure message names, after checking the message says what a user needs."""
    assert "Traceback" not in stderr, stderr
    assert "the sprint stopped" in stderr and f"{journal}:" in stderr, stderr
    assert "file size limit" in stderr, stderr  # the OS error in words, not "[Errno 27]"
    assert "[Errno" not in stderr, stderr
    match = re.search(r"the journal is valid up to seq (\d+)", stderr)
    assert match, stderr
    return int(match.group(1))


def assert_ends_at(journal: Path, seq: int) -> list[dict]:
    """The journal reads strictly (no torn tail to forgive) and its last record is `seq`."""
    _, records, recovery = read_journal(journal)
    assert recovery is None and records and records[-1]["seq"] == seq
    return records


def replay_version(journal: Path) -> int:
    before = journal.read_bytes()
    out = sprintdeck("replay", journal, "--headless", "--json")
    assert out.returncode == 0 and "torn" not in out.stderr, out.stderr
    assert journal.read_bytes() == before
    return int(json.loads(out.stdout)["state"]["version"])


def test_a_full_disk_stops_run_with_exit_3_and_a_journal_that_resumes(tmp_path: Path) -> None:
    journal, workspace = tmp_path / "j.jsonl", tmp_path / "ws"
    out = sprintdeck("run", WEBRTC, "--headless", "--json", "--speed", "200", "--record", journal,
                     "--workspace", workspace, limit=FILE_LIMIT, timeout=60)  # before the fix: hung for good
    assert out.returncode == 3, out.stderr
    assert out.stdout == ""  # no final state: the sprint did not finish
    durable = stopped_at(out.stderr, journal)
    assert f"sprintdeck run {WEBRTC} --resume {journal}" in out.stderr
    before = assert_ends_at(journal, durable)
    assert journal.stat().st_size <= FILE_LIMIT
    assert replay_version(journal) == durable

    resumed = sprintdeck("run", WEBRTC, "--headless", "--json", "--speed", "200", "--resume", journal)
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads(resumed.stdout)["state"]
    assert all(task["status"] == "completed" for task in state["tasks"].values())
    _, after, _ = read_journal(journal)
    assert after[:durable] == before  # continued after the last durable record, nothing rewritten


def test_a_full_disk_stops_serve_with_exit_3_and_serve_resume_continues(tmp_path: Path, short_dir: Path) -> None:
    journal, workspace, listen = tmp_path / "j.jsonl", tmp_path / "ws", f"unix:{short_dir}/s.sock"
    out = sprintdeck("serve", WEBRTC, "--listen", listen, "--headless", "--speed", "200", "--record", journal,
                     "--workspace", workspace, limit=FILE_LIMIT, timeout=60)
    assert out.returncode == 3, out.stderr
    durable = stopped_at(out.stderr, journal)
    assert f"sprintdeck serve {WEBRTC} --listen {listen} --resume {journal}" in out.stderr
    assert_ends_at(journal, durable)
    assert replay_version(journal) == durable

    resumed = sprintdeck("serve", WEBRTC, "--listen", listen, "--headless", "--json", "--speed", "200",
                         "--resume", journal)
    assert resumed.returncode == 0, resumed.stderr
    tasks = json.loads(resumed.stdout)["state"]["tasks"].values()
    assert len(tasks) == 10 and all(task["status"] == "completed" for task in tasks)


def test_a_full_disk_under_the_dashboard_leaves_the_terminal_and_exits_3(tmp_path: Path) -> None:
    """`run` without --headless, in a pseudo-terminal (util-linux `script`): the app quits, then the sentence."""
    journal = tmp_path / "j.jsonl"
    command = f"{sys.executable} -m app.cli run {WEBRTC} --speed 200 --record {journal} --workspace {tmp_path / 'ws'}"
    out = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=ROOT, capture_output=True, timeout=60,
                         env=ENV | {"PYTHONDONTWRITEBYTECODE": "1", "TERM": "xterm-256color", "COLUMNS": "120",
                                    "LINES": "40"}, preexec_fn=file_size_limit(FILE_LIMIT))
    assert out.returncode == 3
    screen = out.stdout.decode(errors="replace")
    after_app = screen[screen.rindex("\x1b[?1049l"):]  # what is printed once the app has left the alternate screen
    durable = stopped_at(after_app.replace("\r", ""), journal)
    assert_ends_at(journal, durable)


@pytest.mark.parametrize("command", ["run", "serve"])
def test_no_room_for_the_header_exits_3_before_the_sprint_starts(command: str, tmp_path: Path, short_dir: Path) -> None:
    journal = tmp_path / "j.jsonl"
    listen = ("--listen", f"unix:{short_dir}/s.sock") if command == "serve" else ()
    out = sprintdeck(command, WEBRTC, *listen, "--headless", "--record", journal, "--workspace", tmp_path / "ws",
                     limit=100, timeout=60)  # the header line is longer than 100 bytes
    assert out.returncode == 3, out.stderr
    assert f"{journal}" in out.stderr and "cannot write the journal header" in out.stderr, out.stderr
    assert "file size limit" in out.stderr and "no journal was written" in out.stderr
    assert "Traceback" not in out.stderr and "--resume" not in out.stderr
    assert not journal.exists()  # no half header left behind to trip the next run


def torn_copy(tmp_path: Path) -> tuple[Path, bytes, int]:
    """The sample journal with its last record cut in the middle; (path, bytes, records kept)."""
    whole = (SAMPLES / "webrtc" / "recorded.jsonl").read_bytes()
    last_start = whole.rindex(b"\n", 0, len(whole) - 1) + 1
    torn = whole[: last_start + 40]
    journal = tmp_path / "torn.jsonl"
    journal.write_bytes(torn)
    return journal, torn, whole[:last_start].count(b"\n") - 1


def test_replay_reads_a_torn_journal_without_writing_anything(tmp_path: Path) -> None:
    journal, torn, kept = torn_copy(tmp_path)
    listing = sorted(os.listdir(tmp_path))
    out = sprintdeck("replay", journal, "--headless", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["version"] == kept
    assert f"{journal}:{kept + 2}: the last record is torn" in out.stderr
    assert f"--resume {journal}" in out.stderr and "leaving the file as it is" in out.stderr
    assert journal.read_bytes() == torn and sorted(os.listdir(tmp_path)) == listing  # no cut, no .broken copy


def test_resume_without_room_for_the_torn_tail_copy_exits_3_and_leaves_the_journal(tmp_path: Path) -> None:
    journal, torn, kept = torn_copy(tmp_path)
    assert len(torn) > FILE_LIMIT  # the `.broken` copy cannot be written under the limit
    out = sprintdeck("run", WEBRTC, "--headless", "--resume", journal, "--workspace", tmp_path, limit=FILE_LIMIT)
    assert out.returncode == 3, out.stderr
    assert "cannot resume" in out.stderr and "keep a copy of the torn tail" in out.stderr
    assert "file size limit" in out.stderr and f"valid up to seq {kept}" in out.stderr
    assert journal.read_bytes() == torn and not list(tmp_path.glob("*.broken*"))


# ---------------------------------------------------------------- paths that are not journals


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    directory = tmp_path / "adir"
    directory.mkdir()
    unreadable = tmp_path / "unreadable.jsonl"
    shutil.copyfile(SAMPLES / "webrtc" / "recorded.jsonl", unreadable)
    unreadable.chmod(0)
    return {"fifo": fifo, "directory": directory, "device": Path("/dev/full"), "missing": tmp_path / "nope.jsonl",
            "unreadable": unreadable, "link to a device": _link(tmp_path / "full-link", "/dev/full")}


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


WORDS = {"fifo": "a FIFO (named pipe), not a journal file", "directory": "a directory, not a journal file",
         "device": "a character device, not a journal file", "missing": "no such file",
         "unreadable": "permission denied", "link to a device": "a character device, not a journal file"}
# Root reads any file: the unreadable case drops the capabilities that let it (util-linux's setpriv).
AS_A_USER = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()


@pytest.mark.parametrize("kind", list(WORDS))
def test_replay_and_resume_refuse_what_is_not_a_journal_in_words(kind: str, odd_paths: dict[str, Path],
                                                                 short_dir: Path) -> None:
    path = odd_paths[kind]
    commands = [("replay", path, "--headless"), ("diff", path, SAMPLES / "webrtc" / "recorded.jsonl"),
                ("run", WEBRTC, "--headless", "--resume", path),
                ("serve", WEBRTC, "--listen", f"unix:{short_dir}/s.sock", "--headless", "--resume", path)]
    for command in commands:
        out = sprintdeck(*command, prefix=AS_A_USER, timeout=30)  # a FIFO must not block the reader
        assert out.returncode == 2, (command, out.stderr)
        assert f"{path}: {WORDS[kind]}" in out.stderr, (command, out.stderr)
        assert "[Errno" not in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "link to a device"])
def test_run_and_serve_refuse_to_record_into_what_is_not_a_file(kind: str, odd_paths: dict[str, Path],
                                                                short_dir: Path) -> None:
    path = odd_paths[kind]
    for command in [("run", WEBRTC, "--headless", "--record", path),
                    ("serve", WEBRTC, "--listen", f"unix:{short_dir}/s.sock", "--headless", "--record", path)]:
        out = sprintdeck(*command, timeout=30)
        assert out.returncode == 2, (command, out.stderr)
        assert f"{path}: {WORDS[kind]}" in out.stderr, (command, out.stderr)
        assert "Traceback" not in out.stderr


def test_a_workspace_that_is_a_file_is_named_in_words(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    out = sprintdeck("run", WEBRTC, "--headless", "--record", tmp_path / "j.jsonl", "--workspace", a_file)
    assert out.returncode == 2
    assert f"workspace {a_file}: already exists and is not a directory" in out.stderr, out.stderr
    assert "[Errno" not in out.stderr and not (tmp_path / "j.jsonl").exists()
