"""Three-way merge of file contents, for resolving a conflict where a base is known.

`git merge-file` is used when git is on PATH: it is the merge users already trust, with its
conflict markers.  Without git, a Python merge (the classic diff3 "sync regions" algorithm, as in
bzr's merge3) over `difflib` matching blocks gives the same answer on line-based text.  Either way
a merge that leaves conflict markers is reported as such and the caller keeps the conflict.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

MARK_OURS, MARK_SEP, MARK_THEIRS = b"<<<<<<<", b"=======", b">>>>>>>"


@dataclass(frozen=True)
class MergeResult:
    """The merged bytes, how many regions conflicted (0 = clean) and which merger ran."""

    content: bytes
    conflicts: int
    tool: str  # "git merge-file" or "python"

    @property
    def clean(self) -> bool:
        return self.conflicts == 0


def merge3(
    base: bytes,
    ours: bytes,
    theirs: bytes,
    *,
    labels: tuple[str, str, str] = ("ours", "base", "theirs"),
    use_git: bool | None = None,
) -> MergeResult:
    """Merge the changes base->ours and base->theirs; git when available unless `use_git` says otherwise."""
    git = shutil.which("git") if use_git is not False else None
    if use_git and git is None:
        raise RuntimeError("git is not on PATH")
    if git is not None:
        return _git_merge(git, base, ours, theirs, labels)
    return python_merge3(base, ours, theirs, labels=labels)


def _git_merge(git: str, base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, str, str]) -> MergeResult:
    with tempfile.TemporaryDirectory(prefix="sprintdeck-merge-") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(str(path))
        label_args = [arg for label in labels for arg in ("-L", label)]
        done = subprocess.run([git, "merge-file", "-p", *label_args, *paths], capture_output=True, check=False)
    # merge-file exits with the number of conflicts (capped at 127); negative or >127 is an error.
    if done.returncode < 0 or done.returncode > 127:
        raise RuntimeError(f"git merge-file failed: {done.stderr.decode(errors='replace').strip()}")
    return MergeResult(done.stdout, done.returncode, "git merge-file")


def python_merge3(
    base: bytes, ours: bytes, theirs: bytes, *, labels: tuple[str, str, str] = ("ours", "base", "theirs")
) -> MergeResult:
    """A line-based three-way merge without git; conflicting regions get git-style markers."""
    base_lines, our_lines, their_lines = (_lines(text) for text in (base, ours, theirs))
    out: list[bytes] = []
    conflicts = 0
    z = a = b = 0
    for z_start, z_end, a_start, a_end, b_start, b_end in _sync_regions(base_lines, our_lines, their_lines):
        same, mine, other = base_lines[z:z_start], our_lines[a:a_start], their_lines[b:b_start]
        if mine == other or other == same:
            out += mine
        elif mine == same:
            out += other
        else:
            conflicts += 1
            out += _conflict_block(mine, other, labels)
        out += base_lines[z_start:z_end]
        z, a, b = z_end, a_end, b_end
    return MergeResult(b"".join(out), conflicts, "python")


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines(keepends=True)


def _conflict_block(mine: list[bytes], other: list[bytes], labels: tuple[str, str, str]) -> list[bytes]:
    def ended(lines: list[bytes]) -> list[bytes]:
        return lines[:-1] + [lines[-1] + b"\n"] if lines and not lines[-1].endswith(b"\n") else lines

    ours_label, _, theirs_label = labels
    return [
        MARK_OURS + b" " + ours_label.encode() + b"\n",
        *ended(mine),
        MARK_SEP + b"\n",
        *ended(other),
        MARK_THEIRS + b" " + theirs_label.encode() + b"\n",
    ]


def _sync_regions(base: list[bytes], a: list[bytes], b: list[bytes]) -> list[tuple[int, int, int, int, int, int]]:
    """Regions where base, a and b agree: (base start, end, a start, end, b start, end), plus a sentinel."""
    a_blocks = SequenceMatcher(None, base, a, autojunk=False).get_matching_blocks()
    b_blocks = SequenceMatcher(None, base, b, autojunk=False).get_matching_blocks()
    regions = []
    ia = ib = 0
    while ia < len(a_blocks) and ib < len(b_blocks):
        a_base, a_match, a_len = a_blocks[ia]
        b_base, b_match, b_len = b_blocks[ib]
        start, end = max(a_base, b_base), min(a_base + a_len, b_base + b_len)
        if start < end:
            a_sub, b_sub = a_match + start - a_base, b_match + start - b_base
            regions.append((start, end, a_sub, a_sub + end - start, b_sub, b_sub + end - start))
        if a_base + a_len < b_base + b_len:
            ia += 1
        else:
            ib += 1
    regions.append((len(base), len(base), len(a), len(a), len(b), len(b)))
    return regions
