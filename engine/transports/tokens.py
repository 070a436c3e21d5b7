"""Per-agent tokens: what an external agent shows to bind its connection to its id (DESIGN §9).

`serve` writes one file per external agent (`<id>.token`, mode 0600) in a directory of its own
(0700) beside the journal, so whoever may read the journal's directory listing still cannot read a
token, and `serve --resume` finds the same tokens again: agents that were connected to the crashed
server reconnect to the new one with the token file they already have.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TOKEN_BYTES = 32


class TokenError(ValueError):
    """A token file that cannot be read or written; the message names the file."""


def tokens_dir_for(journal: Path) -> Path:
    """`runs/x.jsonl` keeps its tokens in `runs/x.tokens/`."""
    return journal.with_name(journal.stem + ".tokens")


def token_path(directory: Path, agent_id: str) -> Path:
    return directory / f"{agent_id}.token"


def ensure_tokens(directory: Path, agent_ids: Iterable[str], *, reuse: bool) -> dict[str, str]:
    """A token per agent id: read from `directory` when `reuse` and present, else new and written."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise TokenError(f"cannot create the token directory {directory}: {exc.strerror or exc}") from None
    tokens = {}
    for agent_id in agent_ids:
        path = token_path(directory, agent_id)
        token = _existing(path) if reuse else None
        if token is None:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            _write(path, token)
        tokens[agent_id] = token
    return tokens


def read_token(path: Path) -> str:
    """The token in `path` (surrounding whitespace ignored); `TokenError` naming the file otherwise."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TokenError(f"token file {path} does not exist (serve prints the directory of the token files)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not token:
        raise TokenError(f"token file {path} is empty")
    return token


def _existing(path: Path) -> str | None:
    try:
        return read_token(path)
    except TokenError:
        return None


def _write(path: Path, token: str) -> None:
    """Write via a temporary file and rename, so an agent re-reading it never sees half a token."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise TokenError(f"cannot write token file {path}: {exc.strerror or exc}") from None
