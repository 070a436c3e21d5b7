"""Per-agent tokens: what an external agent shows to bind its connection to its id (DESIGN §9).

Two ways to keep them:
- by default `serve` writes one file per agent (`<id>.token`, mode 0600) in a directory of its own
  (0700) beside the journal, so whoever may read the journal's directory listing still cannot read
  a token, and `serve --resume` finds the same tokens again: agents of the crashed server reconnect
  to the new one with the token file they already have;
- `serve --token-file PATH` keeps them all in one JSON object `{"<agentId>": "<token>"}` (mode
  0600) that the user chose, read when it exists and written with fresh tokens when it does not.
  Every agent may then be pointed at the same file: it picks its own id's token.

An agent accepts either kind of file (`read_token`), so the same `--token-file` or
`SPRINTDECK_TOKEN_FILE` works whichever way serve keeps them.  Standard library only.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.atomic_file import write_atomically

if TYPE_CHECKING:
    from engine.plan import Plan

TOKEN_BYTES = 32
TOKEN_ENV = "SPRINTDECK_TOKEN"
TOKEN_FILE_ENV = "SPRINTDECK_TOKEN_FILE"
OPEN_TO_OTHERS = 0o066  # group or others may read or write: anyone of them could pose as an agent


class TokenError(ValueError):
    """A token file that cannot be read or written; the message names the file."""


def agents_needing_tokens(plan: Plan) -> list[str]:
    """The agents that connect from other processes and so must prove who they are (a `claude`
    agent's runs connect their hooks and MCP server)."""
    return [agent.id for agent in plan.agents if agent.kind in ("external", "claude")]


def claude_agents(plan: Plan) -> list[str]:
    """The agents the manager runs as `claude -p` processes: their hooks and MCP servers join
    on side channels, while the agent itself lives in the manager's process."""
    return [agent.id for agent in plan.agents if agent.kind == "claude"]


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class TokenPlace:
    """Where serve keeps the tokens: one JSON file (`--token-file`) or a directory of one file each."""

    path: Path
    one_file: bool

    def file_for(self, agent_id: str) -> Path:
        """The file to give `agent --token-file` for this agent."""
        return self.path if self.one_file else token_path(self.path, agent_id)


# ---------------------------------------------------------------- serve: a directory of files


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
            token = new_token()
            _write_private(path, token + "\n")
        tokens[agent_id] = token
    return tokens


def _existing(path: Path) -> str | None:
    try:
        return _one_token(path, _read(path))
    except TokenError:
        return None


# ---------------------------------------------------------------- serve: one JSON file


def token_file_tokens(path: Path, agent_ids: Sequence[str]) -> dict[str, str]:
    """`serve --token-file`: the tokens in `path`, or fresh ones written there when it does not exist.

    An existing file must be private to its owner and hold a token for every agent in `agent_ids`:
    serve refuses it otherwise rather than start agents that could never join.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        tokens = {agent_id: new_token() for agent_id in agent_ids}
        _write_private(path, json.dumps(tokens, indent=2) + "\n")
        return tokens
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if mode & OPEN_TO_OTHERS:
        raise TokenError(f"token file {path} has mode {mode:04o}, which lets group or others read or "
                         f"change it; run chmod 600 {path}")
    tokens = _token_object(path, _read(path))
    missing = [agent_id for agent_id in agent_ids if agent_id not in tokens]
    if missing:
        names = ", ".join(repr(agent_id) for agent_id in missing)
        raise TokenError(f"token file {path} has no token for agent {names}; add one, or remove the file "
                         f"and serve writes a new one for every agent")
    return {agent_id: tokens[agent_id] for agent_id in agent_ids}


# ---------------------------------------------------------------- the operator (`sprintdeck watch`)


def operator_token_path(place: TokenPlace) -> Path:
    """Beside the agents' tokens, under a name no agent's token file can have."""
    return place.path / "operator-token" if not place.one_file else place.path.with_name(place.path.name + ".operator")


def ensure_operator_token(place: TokenPlace, *, reuse: bool) -> str:
    """The token that lets a watcher operate: read back when `reuse` (a resumed serve), else new."""
    path = operator_token_path(place)
    token = _existing(path) if reuse else None
    if token is None:
        token = new_token()
        _write_private(path, token + "\n")
    return token


def read_operator_token(path: Path) -> str:
    """`watch --token-file`: the operator token serve wrote; `TokenError` naming the file otherwise."""
    text = _read(path)
    if text.lstrip().startswith("{"):
        raise TokenError(f"{path} holds the agents' tokens; watch needs the operator token, in the file "
                         "serve wrote beside them (operator-token, or TOKEN_FILE.operator)")
    return _one_token(path, text)


# ---------------------------------------------------------------- agents


def read_token(path: Path, agent_id: str) -> str:
    """`agent_id`'s token in `path`: a one-token file, or a JSON object of tokens by agent id."""
    text = _read(path)
    if not text.lstrip().startswith("{"):  # a token (URL-safe base64) never starts with a brace
        return _one_token(path, text)
    token = _token_object(path, text).get(agent_id)
    if token is None:
        raise TokenError(f"token file {path} has no token for agent {agent_id!r}")
    return token


def token_source(agent_id: str, token_file: str | None, environ: Mapping[str, str] = os.environ) -> Callable[[], str]:
    """How an agent gets its token at each connection: `--token-file`, else `SPRINTDECK_TOKEN`, else
    `SPRINTDECK_TOKEN_FILE`.  A file is read now (a missing or empty one is bad input, not a retry
    loop) and again at each call, since serve may have rewritten it; a call that cannot read it
    keeps the token that worked.
    """
    if token_file:
        return _from_file(Path(token_file), agent_id, "--token-file")
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return lambda: token
    if environ.get(TOKEN_FILE_ENV, "").strip():
        return _from_file(Path(environ[TOKEN_FILE_ENV].strip()), agent_id, TOKEN_FILE_ENV)
    raise TokenError(f"no token: pass --token-file F, or set {TOKEN_ENV} or {TOKEN_FILE_ENV} "
                     "(serve prints where the tokens are)")


def _from_file(path: Path, agent_id: str, origin: str) -> Callable[[], str]:
    try:
        last = [read_token(path, agent_id)]
    except TokenError as exc:
        raise TokenError(f"{origin}: {exc}") from None

    def from_file() -> str:
        try:
            last[0] = read_token(path, agent_id)
        except TokenError:
            pass
        return last[0]

    return from_file


# ---------------------------------------------------------------- reading and writing


def _read(path: Path) -> str:
    """The file's text; `TokenError` naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenError(f"token file {path} does not exist (serve prints where the tokens are)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read token file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _one_token(path: Path, text: str) -> str:
    """A file of one token: surrounding whitespace (the final newline) is not part of it."""
    token = text.strip()
    if not token:
        raise TokenError(f"token file {path} is empty")
    return token


def _token_object(path: Path, text: str) -> dict[str, str]:
    """The `{"<agentId>": "<token>"}` object in `text`; `TokenError` saying where it goes wrong."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenError(f"token file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}") from None
    if not isinstance(value, dict):
        raise TokenError(f'token file {path} should hold one JSON object {{"<agentId>": "<token>"}}')
    for agent_id, token in value.items():
        if not isinstance(token, str) or not token.strip():
            raise TokenError(f"token file {path}: the token for {agent_id!r} should be a non-empty string")
    return value


def _write_private(path: Path, text: str) -> None:
    """Whole or not at all (an agent re-reading it never sees half a token), readable by its owner only."""
    try:
        write_atomically(path, text, mode=0o600)
    except OSError as exc:
        raise TokenError(f"cannot write token file {path}: {exc.strerror or exc}") from None
