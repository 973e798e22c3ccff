"""YAML for specification files, with bounds: plain data in, a clear error out.

``yaml.safe_load`` builds no arbitrary objects, but it still accepts inputs that break or stall
whatever reads them next: aliases that expand exponentially ("billion laughs": the objects are
shared, so loading is fast and every later walk — validation, JSON, a deep copy — is not),
nesting deep enough to exhaust Python's recursion, duplicate keys it silently resolves to the
last one, non-string keys (``yes:`` is the boolean ``True`` in YAML 1.1), and tags that build
bytes, sets or dates. :func:`load` reads the event stream itself, iteratively, and refuses each
of those with a :class:`~tether.errors.UsageError` naming the file, the line, the key path
(``faults[2].rate``) and what was found, before anything large is built:

* at most :data:`MAX_BYTES` of UTF-8 text;
* at most :data:`MAX_DEPTH` levels of nesting;
* at most :data:`MAX_NODES` values in the document *as expanded* (every alias counts the size
  of what it refers to), and no alias to a collection that contains it;
* mapping keys are strings, each once; merge keys (``<<``) are refused;
* only the JSON-like types: mappings, lists, strings, numbers, booleans and null. An unquoted
  date (``2026-01-05``) stays the string it looks like.

>>> load("a: &x [1, 2]\\nb: *x\\n", where="demo.yaml")
{'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev
from yaml.nodes import ScalarNode

from tether.errors import UsageError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "load", "load_file"]

#: The largest specification file read, in bytes.
MAX_BYTES = 4 * 1024 * 1024
#: The deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: The most values a document may hold once every alias is expanded.
MAX_NODES = 500_000

_T = "tag:yaml.org,2002:"
# Plain data only; an implicit timestamp is kept as its text (see the module docstring).
_SCALARS = {f"{_T}str", f"{_T}int", f"{_T}float", f"{_T}bool", f"{_T}null", f"{_T}timestamp"}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _Open:
    """A mapping or list being built, with what it needs for messages and budgets."""

    value: dict[str, Any] | list[Any]
    anchor: str | None
    path: str
    line: int
    size: int = 1
    key: str | None = None      # a mapping's pending key (its value comes next)
    key_line: int = 0
    keys: dict[str, int] = field(default_factory=dict)   # key -> line first seen


def load_file(path: str | Path, what: str) -> Any:
    """Read ``path`` and :func:`load` it; ``what`` names the kind of file in errors."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path}: the {what} file is larger than {MAX_BYTES} bytes; "
                         "split it or trim the seeded world")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                         f"{exc.start}); save the {what} file as UTF-8") from exc
    return load(text, where=str(path))


def load(text: str, *, where: str) -> Any:
    """The one document in ``text`` as plain data, within the bounds of the module docstring;
    ``None`` for an empty document. ``where`` names the source in errors."""
    return _Builder(where).run(text)


class _Builder:
    def __init__(self, where: str) -> None:
        self.where = where
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[Any, int]] = {}    # anchor -> (value, expanded size)
        self.open_anchors: set[str] = set()
        self.nodes = 0
        self.documents = 0
        self.result: Any = None
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolver = _Loader("")

    def run(self, text: str) -> Any:
        try:
            for event in yaml.parse(text, Loader=_Loader):
                self.feed(event)
        except yaml.YAMLError as exc:
            raise UsageError(f"{self.where}: not valid YAML: {_yaml_problem(exc)}") from exc
        return self.result

    def fail(self, event: ev.Event, path: str, problem: str) -> UsageError:
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if len(path) > 120:  # a path 64 levels deep says nothing more than its two ends
            path = f"{path[:40]}…{path[-60:]}"
        return UsageError(f"{self.where}: line {line}: {path or '(top)'}: {problem}")

    # -- events -------------------------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        if isinstance(event, ev.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(event, "", "expected one YAML document, found a second "
                                "(a line with ---); keep one document per file")
        elif isinstance(event, ev.ScalarEvent):
            self.scalar(event)
        elif isinstance(event, ev.MappingStartEvent | ev.SequenceStartEvent):
            self.start(event)
        elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
            self.end()
        elif isinstance(event, ev.AliasEvent):
            self.alias(event)

    def path(self) -> str:
        """The key path of the value that comes next."""
        if not self.stack:
            return ""
        top = self.stack[-1]
        if isinstance(top.value, list):
            return f"{top.path}[{len(top.value)}]"
        key = top.key if top.key is not None else "?"
        return f"{top.path}.{key}" if top.path else key

    def wants_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) and \
            self.stack[-1].key is None

    def count(self, event: ev.Event, size: int) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise self.fail(event, self.path(), f"the document expands to more than {MAX_NODES} "
                            "values (aliases count what they refer to); write it out smaller")

    def scalar(self, event: ev.ScalarEvent) -> None:
        value = self.construct(event)
        if self.wants_key():
            self.key(event, value)
            if event.anchor is not None:
                self.anchors[event.anchor] = (value, 1)
            return
        self.count(event, 1)
        self.add(event, value, 1)

    def key(self, event: ev.Event, key: Any) -> None:
        top = self.stack[-1]
        if not isinstance(key, str):
            shown = "a mapping or list" if key is _COLLECTION else _kind(key)
            raise self.fail(event, top.path, f"mapping keys must be strings, found {shown}; "
                            "quote the key")
        where = f"{top.path}.{key}" if top.path else key
        if key == "<<":
            raise self.fail(event, where, "merge keys (<<) are not supported; write the keys "
                            "out")
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if key in top.keys:
            raise self.fail(event, where, f"duplicate key (first at line {top.keys[key]}); "
                            "each key may appear once")
        top.keys[key] = line
        top.key = key

    def start(self, event: ev.MappingStartEvent | ev.SequenceStartEvent) -> None:
        if self.wants_key():
            self.key(event, _COLLECTION)
        explicit = event.tag not in (None, "!", f"{_T}map", f"{_T}seq")
        if explicit:
            raise self.fail(event, self.path(), f"unsupported tag {event.tag}; only plain "
                            "mappings, lists, strings, numbers, booleans and null are read")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(event, self.path(), f"nested deeper than {MAX_DEPTH} levels")
        self.count(event, 1)
        value: dict[str, Any] | list[Any] = {} if isinstance(event, ev.MappingStartEvent) else []
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        self.stack.append(_Open(value, event.anchor, self.path(), line))
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)

    def end(self) -> None:
        done = self.stack.pop()
        if done.anchor is not None:
            self.open_anchors.discard(done.anchor)
            self.anchors[done.anchor] = (done.value, done.size)
        self.place(done.value, done.size)

    def alias(self, event: ev.AliasEvent) -> None:
        name = event.anchor or ""
        if self.wants_key():
            raise self.fail(event, self.stack[-1].path, f"an alias (*{name}) as a mapping key; "
                            "write the key out")
        if name in self.open_anchors:
            raise self.fail(event, self.path(), f"alias *{name} refers to a collection that "
                            "contains it (a cycle)")
        if name not in self.anchors:
            raise self.fail(event, self.path(), f"alias *{name} names no anchor before it")
        value, size = self.anchors[name]
        self.count(event, size)
        # A copy, not the shared object: the result is a plain tree, as large as it counted.
        self.place(copy.deepcopy(value), size)

    def add(self, event: ev.ScalarEvent, value: Any, size: int) -> None:
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, size)
        self.place(value, size)

    def place(self, value: Any, size: int) -> None:
        if not self.stack:
            self.result = value
            return
        top = self.stack[-1]
        top.size += size
        if isinstance(top.value, list):
            top.value.append(value)
        else:
            assert top.key is not None
            top.value[top.key] = value
            top.key = None

    def construct(self, event: ev.ScalarEvent) -> Any:
        tag = event.tag
        if tag == "!":  # the non-specific tag: a string, whatever it looks like
            return event.value
        if tag is None:
            tag = self.resolver.resolve(ScalarNode, event.value, event.implicit)
        if tag == f"{_T}merge":  # ``<<``: refused as a key (see key()), a string elsewhere
            return event.value
        if tag not in _SCALARS or (tag == f"{_T}timestamp" and event.tag is not None):
            raise self.fail(event, self.path(), f"unsupported tag {tag}; only plain mappings, "
                            "lists, strings, numbers, booleans and null are read")
        if tag in (f"{_T}str", f"{_T}timestamp"):
            return event.value
        node = ScalarNode(tag, event.value)
        build = {f"{_T}int": self.constructor.construct_yaml_int,
                 f"{_T}float": self.constructor.construct_yaml_float,
                 f"{_T}bool": self.constructor.construct_yaml_bool,
                 f"{_T}null": self.constructor.construct_yaml_null}[tag]
        try:
            return build(node)
        except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError) as exc:
            # An explicit tag on text that is not of its type (!!bool maybe, !!int x), or an
            # integer longer than Python parses (4300 digits).
            problem = f"a number of {len(event.value)} characters is too long to read" \
                if len(event.value) > 4000 else f"expected {tag.rsplit(':', 1)[-1]}"
            raise self.fail(event, self.path(), f"cannot read {_short(event.value)}: "
                            f"{problem}") from exc


_COLLECTION = object()


def _kind(value: Any) -> str:
    if value is None:
        return "null (an empty key or ~)"
    kinds = {int: "the number", float: "the number", bool: "the boolean"}
    return f"{kinds.get(type(value), type(value).__name__)} {_short(value)}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "…"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line, with the line and column but not its stream name."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split()).replace('in "<unicode string>", ', "at ")
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + \
        (f" ({context})" if context else "")
