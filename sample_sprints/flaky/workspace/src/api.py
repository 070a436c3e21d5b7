"""The package's public entry point."""

from src.cache import cached_parse


def settings(text: str) -> dict[str, str]:
    return dict(cached_parse(text))
