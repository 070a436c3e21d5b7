"""A small LRU cache in front of the parser."""

from functools import lru_cache

from src.parser import parse


@lru_cache(maxsize=128)
def cached_parse(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(parse(text).items()))
