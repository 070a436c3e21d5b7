"""OS errors as sentences that name the path: what the commands print instead of `[Errno 21] …`.

Every command opens files a user named (a plan, a journal, a workspace); when the OS refuses, the
user should read which path and what is wrong with it, in words, not Python's repr of an errno.
`regular_file_problem` is the one check that a path meant as a file (a journal) is one: a FIFO
would block the reader forever, a device (`/dev/full`) swallows or refuses every record, a
directory cannot be appended to.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_SENTENCES = {
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than this process may write (file size limit)",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "input/output error (the disk failed)",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EEXIST: "already exists and is not a directory",  # what mkdir of a workspace meets
    errno.ECONNREFUSED: "connection refused (is the server running, and on that port?)",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ETIMEDOUT: "the connection timed out",
}


def describe(exc: OSError, path: Path | str | None = None) -> str:
    """The error in words: "no space left on the device (the disk is full)".

    The path the OS names is added when it is not `path` (the one the caller already names).
    """
    known = _SENTENCES.get(exc.errno) if exc.errno is not None else None
    text = known or (exc.strerror or str(exc)).lower()
    if exc.filename is not None and (path is None or os.fsdecode(exc.filename) != os.fsdecode(path)):
        text += f" ({os.fsdecode(exc.filename)})"
    return text


def os_problem(path: Path | str, exc: OSError) -> str:
    """`PATH: what is wrong`, naming the path the error is about (the one the OS names, if any)."""
    return f"{os.fsdecode(path)}: {describe(exc, path)}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file_problem(path: Path, *, must_exist: bool) -> str | None:
    """Why `path` cannot be a journal file, in words without the path; None when it is a regular file.

    An absent path is a problem only with `must_exist`.
    Checked before opening, since opening a FIFO for reading blocks until a writer comes.
    Symbolic links are followed: a link to `/dev/full` is a device.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file" if must_exist else None
    except OSError as exc:
        return describe(exc, path)
    if stat.S_ISREG(mode):
        return None
    return f"{_kind(mode)}, not a journal file"
