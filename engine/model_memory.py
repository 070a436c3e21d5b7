"""Per-instance bookkeeping pydantic keeps that a sprint never reads, shared instead of repeated.

pydantic records, on every model instance, the set of fields given at validation
(`model_fields_set`).  A set of seven names costs 728 bytes: as much as a task's own values, for
each plan task and each task state of a 100,000-task sprint.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel


def share_fields_sets(models: Iterable[BaseModel]) -> None:
    """Give the models that were given the same keys one shared frozenset of them.

    Plans and states read `model_fields_set` (a task's default coordination and retry limit are
    decided from it while loading) but never add to it afterwards; a later assignment through
    pydantic's own `__setattr__` would fail loudly (a frozenset has no `add`) rather than go wrong.
    """
    shared: dict[frozenset[str], frozenset[str]] = {}
    for model in models:
        names = frozenset(model.__pydantic_fields_set__)
        object.__setattr__(model, "__pydantic_fields_set__", shared.setdefault(names, names))
