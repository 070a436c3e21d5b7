"""The state's wire-shape JSON in pieces, never the whole of it at once.

At 100,000 tasks the state's JSON is 45 MB.  The sprint's last `state_digest` and the JSON that
`run --json` prints each held it whole as one bytes object, which made the end of a large sprint
its peak memory.  `state_json_chunks` gives exactly the bytes of pydantic's `to_json(state)` (the
digest depends on it, and a test holds it to that), a field at a time and the large mappings a
slice of entries at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache
from itertools import islice
from typing import Any

from pydantic import TypeAdapter

from engine.models import ProjectState

SLICE = 2000  # entries of a mapping serialised in one call: few calls, small pieces


def state_json_chunks(state: ProjectState, slice_size: int = SLICE) -> Iterator[bytes]:
    """`state.__pydantic_serializer__.to_json(state)`, in pieces that join to the same bytes."""
    serializer = state.__pydantic_serializer__
    yield b"{"
    first = True
    for name, field in ProjectState.model_fields.items():
        if field.exclude:
            continue
        value = getattr(state, name)
        if not first:
            yield b","
        first = False
        if isinstance(value, dict) and len(value) > slice_size:
            yield from _mapping_chunks(name, value, slice_size)
        else:
            yield serializer.to_json(state, include={name})[1:-1]  # `"key":value`, alias and all
    yield b"}"


def state_digest(state: ProjectState) -> str:
    """sha256 hex of the state's wire-shape JSON (`state.model_dump_json()`), hashed piece by piece.

    The manager journals it every so often (a `state_digest` event, computed before that event is
    applied) so that a replay can prove, not assume, that its fold matches the live state.
    pydantic's own serialiser writes the bytes: 8x faster than json.dumps(sort_keys=True) on
    10,000 tasks, and just as canonical here, because a replay folds the same events in the same
    order.
    """
    digest = hashlib.sha256()
    for chunk in state_json_chunks(state):
        digest.update(chunk)
    return digest.hexdigest()


def _mapping_chunks(name: str, mapping: dict[str, Any], slice_size: int) -> Iterator[bytes]:
    field = ProjectState.model_fields[name]
    yield b'"' + (field.serialization_alias or field.alias or name).encode() + b'":{'
    adapter = _adapter(name)
    entries = iter(mapping.items())
    first = True
    while piece := dict(islice(entries, slice_size)):
        if not first:
            yield b","
        first = False
        yield adapter.serializer.to_json(piece)[1:-1]
    yield b"}"


@cache
def _adapter(name: str) -> TypeAdapter[Any]:
    annotation = ProjectState.model_fields[name].annotation
    assert annotation is not None  # every field of the state is annotated
    return TypeAdapter(annotation)
