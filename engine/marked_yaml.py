"""Plan files read into YAML values that remember their lines (JSON is read as YAML).

Every message about a plan names a line, and the values that pydantic and the cross checks see
are plain dicts and lists; so the loader here builds `MarkedDict`/`MarkedList`, which carry the
line of the node and of each key or item, and `line_at` walks a path such as
`("tasks", 3, "depends_on", 0)` back to the nearest line that exists.
"""

from __future__ import annotations

import hashlib
import re
import sys
from array import array
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner


class MarkedDict(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key.

    Slotted (a large plan holds four or five of these per task while it is checked)."""

    __slots__ = ("line", "key_lines")

    def __init__(self, line: int = 1) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class MarkedList(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item (slotted too)."""

    __slots__ = ("line", "item_lines")

    def __init__(self, line: int = 1) -> None:
        super().__init__()
        self.line = line
        self.item_lines = array("l")  # machine ints: a list held an int object per item


class UnreadableDocument(Exception):
    """The file could not be read or parsed; `line` is where, `message` says why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _PyParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python parser, for an installation without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


if TYPE_CHECKING:  # the checker sees libyaml's parser; `_PyParser` offers the same methods
    from yaml._yaml import CParser as _EventSource
else:
    try:
        # libyaml parses ~3x faster than PyYAML's Python parser, and refuses nesting deeper than
        # 1000 levels itself, so deep input is an error to report, not a crash.
        from yaml._yaml import CParser as _EventSource
    except ImportError:  # pragma: no cover
        _EventSource = _PyParser


class _Open:
    """A mapping or sequence being read: its value, and (mappings) the key waiting for its value."""

    __slots__ = ("value", "key", "key_line", "has_key", "first_lines", "merges", "start_mark")

    def __init__(self, value: MarkedDict | MarkedList, start_mark: Any) -> None:
        self.value = value
        self.start_mark = start_mark
        self.has_key = False
        self.key: Any = None
        self.key_line = 0
        self.first_lines: dict[Any, int] = {}  # own scalar keys -> first line: duplicates are named
        self.merges: list[tuple[Any, Any]] = []  # (`<<` value, its mark), applied when the mapping ends


class MarkedLoader(_EventSource, SafeConstructor, Resolver):
    """Reads the document's events and builds `MarkedDict`/`MarkedList` from them directly, so any
    value can be traced to its line.

    No node tree is composed (a tree of every scalar with two marks each was 3.5 KB per task of a
    large plan, all alive at once); plain strings, by far the most common value, are taken as
    they are, and only other scalars (numbers, booleans, dates) go through the safe constructor.
    What YAML itself means is PyYAML's: tag resolution, anchors and aliases, `<<` merges.
    """

    def __init__(self, stream: str) -> None:
        _EventSource.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.duplicates: list[tuple[int, str]] = []  # (line, message) of each key written twice
        self._anchors: dict[str, tuple[Any, Any]] = {}  # anchor -> (value, mark)

    def load_document(self) -> Any:
        """The single document's value (None for an empty file)."""
        self.get_event()  # stream start
        if self.check_event(yaml.StreamEndEvent):
            return None
        start: Any = self.get_event()  # document start
        document = self._read_value()
        self.get_event()  # document end
        if not self.check_event(yaml.StreamEndEvent):
            extra: Any = self.get_event()
            raise ComposerError("expected a single document in the stream", start.start_mark,
                                "but found another document", extra.start_mark)
        return document

    def _read_value(self) -> Any:
        """The next whole value, read with a stack of open collections (no recursion)."""
        stack: list[_Open] = []
        while True:
            event: Any = self.get_event()
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                done = stack.pop()
                if done.merges:
                    self._merge(done)
                if not stack:
                    return done.value
                continue
            top = stack[-1] if stack else None
            value = self._value_of(event, as_key=top is not None and isinstance(top.value, MarkedDict)
                                   and not top.has_key)
            if stack:
                self._place(stack[-1], value, event)
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append(_Open(value, event.start_mark))
            elif not stack:
                return value

    def _value_of(self, event: Any, *, as_key: bool) -> Any:
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self._anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", mark)
            return self._anchors[event.anchor][0]
        anchor = event.anchor
        if anchor is not None and anchor in self._anchors:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence", self._anchors[anchor][1],
                                "second occurrence", mark)
        value: Any
        if isinstance(event, yaml.ScalarEvent):
            value = self._scalar(event, as_key)
        elif isinstance(event, yaml.SequenceStartEvent):
            value = MarkedList(mark.line + 1)
        else:
            value = MarkedDict(mark.line + 1)
        if anchor is not None:
            self._anchors[anchor] = (value, mark)
        return value

    def _scalar(self, event: Any, as_key: bool) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        if as_key and tag == _MERGE:
            return _MERGE_KEY
        if tag == _STR or (as_key and tag == _VALUE):  # a `=` key is a string, as PyYAML reads it
            # Interned: a large plan writes the same keys, capabilities and task ids (as
            # dependencies) over and over, and each was a string of its own while it was checked.
            return sys.intern(event.value)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        value = self.construct_object(node)
        self.constructed_objects.pop(node, None)  # the safe constructor's memo would keep every node
        return value

    def _place(self, parent: _Open, value: Any, event: Any) -> None:
        line = event.start_mark.line + 1
        if isinstance(parent.value, MarkedList):
            parent.value.append(value)
            parent.value.item_lines.append(line)
            return
        if not parent.has_key:
            self._take_key(parent, value, event)
            return
        parent.has_key = False
        if parent.key is _MERGE_KEY:
            parent.merges.append((value, event.start_mark))
            return
        parent.value[parent.key] = value
        parent.value.key_lines[parent.key] = parent.key_line

    def _take_key(self, parent: _Open, key: Any, event: Any) -> None:
        parent.has_key, parent.key_line = True, event.start_mark.line + 1
        if key is _MERGE_KEY:
            parent.key = key
            return
        if not isinstance(key, Hashable):
            raise ConstructorError("while constructing a mapping", parent.start_mark, "found unhashable key",
                                   event.start_mark)
        parent.key = key
        if isinstance(event, yaml.ScalarEvent):
            first = parent.first_lines.setdefault(key, parent.key_line)
            if key in parent.value:  # written before (its value is placed before the next key)
                self.duplicates.append((parent.key_line, f"duplicate key {_quoted(key)} (first on line {first}): "
                                                         "only one of the two would be kept"))

    def _merge(self, mapping: _Open) -> None:
        """YAML's `<<` as PyYAML reads it: the merged mappings' pairs first (an earlier mapping wins a
        key they share), then the mapping's own, which override them."""
        merged: list[MarkedDict] = []
        for value, mark in mapping.merges:
            sources = value if isinstance(value, MarkedList) else [value]
            for source in sources:
                if not isinstance(source, MarkedDict):
                    what = "a mapping for merging" if sources is value else "a mapping or list of mappings for merging"
                    raise ConstructorError("while constructing a mapping", mapping.start_mark,
                                           f"expected {what}, but found {_kind(source)}", mark)
                merged.append(source)
        data = mapping.value
        assert isinstance(data, MarkedDict)
        own, own_lines = list(data.items()), dict(data.key_lines)
        data.clear()
        data.key_lines = {}
        for source in merged:
            for key, item in source.items():
                if key not in data:  # the first mapping merged that has a key gives its value
                    data[key] = item
                    data.key_lines[key] = source.key_lines.get(key, source.line)
        for key, item in own:
            data[key] = item
            data.key_lines[key] = own_lines[key]


def _kind(value: Any) -> str:
    return "sequence" if isinstance(value, MarkedList) else "mapping" if isinstance(value, MarkedDict) else "scalar"


_MERGE_KEY = object()  # the key slot holds this while a `<<` waits for its value
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
# YAML 1.1 reads `1e5` as a string; JSON (and YAML 1.2) read it as a number.
MarkedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _quoted(key: Any) -> str:
    text = repr(key) if isinstance(key, str) else str(key)
    return text if len(text) <= 60 else text[:57] + "..."


def line_at(root: Any, loc: Sequence[Any]) -> int:
    """The line of the deepest node of `loc` that exists in the document."""
    node = root
    line: int = getattr(root, "line", 1)
    for part in loc:
        if isinstance(node, MarkedDict) and part in node:
            line, node = node.key_lines.get(part, line), node[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.item_lines[part], node[part]
        else:
            break
    return line


# ---------------------------------------------------------------- reading a file


def read_document(path: Path) -> tuple[Any, str, list[tuple[int, str]]]:
    """The parsed document, the sha256 hex digest of the file's bytes, and (line, message) for
    each key written twice in one mapping (the document holds the last of them).

    Raises `UnreadableDocument` when the file cannot be read, is not UTF-8, or is not YAML.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableDocument(1, "file not found") from None
    except IsADirectoryError:
        raise UnreadableDocument(1, "is a directory, not a plan file") from None
    except OSError as exc:
        raise UnreadableDocument(1, f"cannot read the plan: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UnreadableDocument(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    if path.suffix.lower() == ".json":
        text = text.replace("\t", " ")  # JSON allows tabs between tokens, YAML does not
    loader = MarkedLoader(text)  # what yaml.load does, keeping the loader for its duplicates
    try:
        document = loader.load_document()
    except (yaml.YAMLError, RecursionError) as exc:
        raise UnreadableDocument(*_yaml_problem(exc, text)) from None
    finally:
        loader.dispose()
    return document, hashlib.sha256(data).hexdigest(), loader.duplicates


def _yaml_problem(exc: BaseException, text: str) -> tuple[int, str]:
    """(line, message) for a document PyYAML could not read."""
    if isinstance(exc, RecursionError):
        return 1, "YAML nesting is too deep"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return line, f"YAML syntax error: unacceptable character {chr(exc.character)!r}: {exc.reason}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.problem.startswith("but "):
            message = f"YAML syntax error: {exc.context}, {exc.problem}"
        elif exc.problem and exc.context:
            where = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context}{where})"
        return (mark.line + 1 if mark else 1), message
    return 1, f"YAML syntax error: {exc}"
