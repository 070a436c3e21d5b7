"""Plan files read into YAML values that remember their lines (JSON is read as YAML).

Every message about a plan names a line, and the values that pydantic and the cross checks see
are plain dicts and lists; so the loader here builds `MarkedDict`/`MarkedList`, which carry the
line of the node and of each key or item, and `line_at` walks a path such as
`("tasks", 3, "depends_on", 0)` back to the nearest line that exists.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner


class MarkedDict(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 1
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 1
    item_lines: list[int]


class UnreadableDocument(Exception):
    """The file could not be read or parsed; `line` is where, `message` says why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _PyParser(Reader, Scanner, Parser, Composer):
    """PyYAML's pure-Python parser and composer, for an installation without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)


if TYPE_CHECKING:  # the checker sees libyaml's parser; `_PyParser` offers the same methods
    from yaml._yaml import CParser as _NodeSource
else:
    try:
        # libyaml parses and composes in C, ~2x faster on a large plan; it refuses nesting deeper
        # than 1000 levels itself, so deep input is an error to report, not a crash.
        from yaml._yaml import CParser as _NodeSource
    except ImportError:  # pragma: no cover
        _NodeSource = _PyParser


class MarkedLoader(_NodeSource, SafeConstructor, Resolver):
    """Composes the document's nodes (with their marks) and builds `MarkedDict`/`MarkedList` from
    them, so any value can be traced to its line.

    The build is this module's own walk over the nodes rather than PyYAML's constructor machinery:
    plain strings, by far the most common value, are taken as they are, and only other scalars
    (numbers, booleans, dates) go through the safe constructor.
    """

    def __init__(self, stream: str) -> None:
        _NodeSource.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.duplicates: list[tuple[int, str]] = []  # (line, message) of each key written twice
        self._built: dict[int, Any] = {}  # id(node) -> value: an alias is the anchored value itself

    def load_document(self) -> Any:
        """The single document's value (None for an empty file)."""
        node = self.get_single_node()
        return None if node is None else self.build(node)

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return node.value if node.tag == _STR else self.construct_object(node, deep=True)
        built = self._built.get(id(node))
        if built is not None:
            return built
        if isinstance(node, yaml.SequenceNode):
            return self._build_list(node)
        if isinstance(node, yaml.MappingNode):
            return self._build_dict(node)
        raise ConstructorError(None, None, f"could not determine a constructor for the tag {node.tag!r}",
                               node.start_mark)

    def _build_list(self, node: yaml.SequenceNode) -> MarkedList:
        data = self._built[id(node)] = MarkedList()  # before the items: an item may refer back to it
        data.line = node.start_mark.line + 1
        data.item_lines = [child.start_mark.line + 1 for child in node.value]
        data.extend(self.build(child) for child in node.value)
        return data

    def _build_dict(self, node: yaml.MappingNode) -> MarkedDict:
        data = self._built[id(node)] = MarkedDict()
        data.line = node.start_mark.line + 1
        data.key_lines = {}
        self.note_duplicates(node)  # before a `<<` merge mixes in keys that may be overridden
        if any(key.tag == _MERGE for key, _ in node.value):
            self.flatten_mapping(node)  # PyYAML's merge: node.value becomes the merged pairs
        for key_node, value_node in node.value:
            key = self.build(key_node)
            if not isinstance(key, Hashable):
                raise ConstructorError("while constructing a mapping", node.start_mark, "found unhashable key",
                                       key_node.start_mark)
            data[key] = self.build(value_node)
            data.key_lines[key] = key_node.start_mark.line + 1
        return data

    def note_duplicates(self, node: yaml.MappingNode) -> None:
        """Record each key a mapping writes twice: YAML would keep the last silently.

        Only the mapping's own keys count; one that overrides a `<<` merge is YAML doing its job.
        """
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            key, line = self.build(key_node), key_node.start_mark.line + 1
            if key in first:
                self.duplicates.append((line, f"duplicate key {_quoted(key)} (first on line {first[key]}): "
                                              "only one of the two would be kept"))
            else:
                first[key] = line


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
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
