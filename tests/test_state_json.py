"""The state's JSON written in pieces is the state's JSON: digests recorded in journals depend on
its exact bytes, and `run --json` prints it (engine/state_json.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

from engine.events import Event
from engine.journal import read_journal
from engine.models import FileState, ProjectState, TaskState
from engine.reducer import fold
from engine.state_json import state_digest, state_json_chunks
from test_replay import SAMPLE_JOURNAL


def whole(state: ProjectState) -> bytes:
    return state.__pydantic_serializer__.to_json(state)


def recorded_state() -> ProjectState:
    """The state at the end of the recorded sample sprint: agents, tasks, files, attempts."""
    return fold(Event.from_record(record) for record in read_journal(SAMPLE_JOURNAL)[1])


@pytest.mark.parametrize("slice_size", [1, 2, 3, 1000])
def test_the_pieces_join_to_pydantics_bytes_for_a_recorded_sprint(slice_size: int) -> None:
    state = recorded_state()
    assert len(state.tasks) > 3 and state.files and state.agents
    pieces = list(state_json_chunks(state, slice_size))
    assert b"".join(pieces) == whole(state)
    if slice_size == 1:  # each task on its own: no piece holds every task
        assert max(len(piece) for piece in pieces) < len(whole(state)) / 3


def test_ids_that_need_escaping_and_an_empty_state_are_the_same_bytes() -> None:
    assert b"".join(state_json_chunks(ProjectState(), 1)) == whole(ProjectState())
    state = ProjectState()
    for task_id in ('quote"d', "back\\slash", "ünïcödé", "tab\there", "x" * 200):
        state.tasks[task_id] = TaskState(id=task_id, title=task_id)
    state.files['dir/"odd".txt'] = FileState(path='dir/"odd".txt')
    assert b"".join(state_json_chunks(state, 2)) == whole(state)
    assert json.loads(b"".join(state_json_chunks(state, 2)))["tasks"]["ünïcödé"]["title"] == "ünïcödé"


def test_the_digest_is_the_sha256_of_the_whole_json() -> None:
    state = recorded_state()
    assert state_digest(state) == hashlib.sha256(whole(state)).hexdigest()
