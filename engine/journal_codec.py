"""The journal's line format, in one place: how a header and a record become bytes and back (DESIGN §8).

The writer and both readers (`engine/journal.py`, and the replay cursor in `engine/replay.py`,
which checks a million lines in bulk) use these names, so the format is written down once
(readable with `jq`):

    line 1   {"format":"sprintdeck-journal","version":1,"sprint":...,"planDigest":...,
              "startedAt":"<ISO-8601 UTC>","epoch":1, ...extra header keys}
    line N+1 {"seq":N,"ts":"<ISO-8601 UTC>","mono":<float>,"type":"...","data":{...},"crc":"<8 hex>"}

`seq` runs from 1 without gaps (the readers check it).  `crc` is `zlib.crc32` of the record's
canonical JSON without the crc key: `json.dumps({"seq":..,"ts":..,"mono":..,"type":..,"data":..},
separators=(",", ":"))` -- keys in that order, `ensure_ascii` and `allow_nan=False` as json's
defaults and our setting -- as UTF-8 bytes, written as 8 lower-case hex digits.  The writer
produces exactly those bytes and appends `,"crc":"…"}`, so a reader checks a line by hashing its
own bytes up to the crc key (plus the closing brace) without re-serialising; `json.dumps` of the
parsed record gives the same bytes.

Nothing here touches a file: the functions take and return bytes, and a line that does not decode
raises `BadHeader` or `BadRecord` saying why; the readers add the file and line to that.  stdlib
`json` is used: serialising an event costs a few microseconds against a per-event budget of 50
(20,000 events/s), so orjson would not change the figure that matters.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

FORMAT = "sprintdeck-journal"
VERSION = 1
RECORD_KEYS = ("seq", "ts", "mono", "type", "data", "crc")
SEQ_START = b'{"seq":%d,'  # how the line of record `seq` starts (`SEQ_START % seq`)
CRC_PREFIX = b',"crc":"'
CRC_END = b'"}'
CRC_SUFFIX_LEN = len(CRC_PREFIX) + 8 + len(CRC_END)  # ,"crc":"xxxxxxxx"}  ends every record line
TORN = "torn: no end of line"  # why a last line cut short by a crash is not a record


class BadHeader(ValueError):
    """A first line that is not a journal header this code can read; the message says why."""


class BadRecord(ValueError):
    """A line that is not a valid record; the message says why."""


def utc_timestamp() -> str:
    """Now as ISO-8601 UTC with a `Z`, the form every journal timestamp uses."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- the header


def encode_header(header: Mapping[str, Any]) -> bytes:
    """The header line, newline included.

    `header` gives `sprint` and `planDigest` (written as null when absent, so every header has
    the same keys); `startedAt` defaults to now and `epoch` to 1; further keys are kept after
    these.  `format` and `version` are always this module's.
    """
    fields = {
        "format": FORMAT,
        "version": VERSION,
        "sprint": header.get("sprint"),
        "planDigest": header.get("planDigest"),
        "startedAt": header.get("startedAt") or utc_timestamp(),
        "epoch": header.get("epoch", 1),
    }
    line = json.dumps(
        {**fields, **{key: value for key, value in header.items() if key not in fields}},
        separators=(",", ":"),
        allow_nan=False,
    )
    return line.encode() + b"\n"


def decode_header(raw: bytes) -> dict[str, Any]:
    """The header in `raw` (the file's first line, newline included); raises `BadHeader`."""
    if not raw:
        raise BadHeader("empty file: no journal header")
    if not raw.endswith(b"\n"):
        raise BadHeader("torn header line")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise BadHeader(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadHeader(f"not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise BadHeader(f"unsupported journal version {header.get('version')!r}")
    return header


# ---------------------------------------------------------------- records


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C encoder with `json.dumps(separators=(",", ":"), allow_nan=False)`'s settings, built once.
# `JSONEncoder.encode` builds one per call (and walks two Python frames to do it): a fifth of an
# event's cost to journal.  No circular-reference markers: event data are trees of parsed JSON
# and dicts the manager builds.  `tests/test_journal.py` checks the bytes against `json.dumps`.
# (typeshed leaves out `c_make_encoder`, the C accelerator's private constructor: hence the ignore.)
_encode_chunks = c_make_encoder(None, _refuse, encode_basestring_ascii, None, ":", ",", False, False, False)


def encode_record(seq: int, type: str, data: dict[str, Any], ts: str, mono: float) -> bytes:
    """One journal line, newline included; the crc is over the canonical JSON (module docstring)."""
    body = "".join(_encode_chunks({"seq": seq, "ts": ts, "mono": mono, "type": type, "data": data}, 0)).encode()
    return body[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(body)


def crc_problem(line: bytes) -> str | None:
    """Why `line` (without its newline) does not end in the crc of the rest; None when it does.

    Cheap on purpose (no JSON parsing): the crc covers every byte the writer produced, so a line
    whose crc matches is a line the writer wrote.
    """
    if len(line) < CRC_SUFFIX_LEN or line[-CRC_SUFFIX_LEN:-10] != CRC_PREFIX or line[-2:] != CRC_END:
        return "no crc at the end of the record"
    stored = line[-10:-2]
    if b"%08x" % zlib.crc32(line[:-CRC_SUFFIX_LEN] + b"}") != stored:
        return f"crc mismatch (stored {stored.decode(errors='replace')})"
    return None


def decode_record(raw: bytes) -> dict[str, Any]:
    """Check one line (newline included) and return its record; raises `BadRecord`.

    Its seq is not judged here: whether it is the one expected is up to the reader.
    """
    if not raw.endswith(b"\n"):
        raise BadRecord(TORN)
    line = raw[:-1]
    problem = crc_problem(line)
    if problem is not None:
        raise BadRecord(problem)
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise BadRecord(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or tuple(record) != RECORD_KEYS:
        raise BadRecord(f"keys must be {', '.join(RECORD_KEYS)}")
    if not (
        isinstance(record["ts"], str)
        and isinstance(record["mono"], (int, float))
        and isinstance(record["type"], str)
        and isinstance(record["data"], dict)
    ):
        raise BadRecord("ts and type must be strings, mono a number and data an object")
    return record
