"""Hypothesis strategies that mutate real YAML specification files into bad input.

A mutation is structural (a key deleted or renamed, a value at any depth replaced by one of
another type, a huge number, inf/nan, a huge string, nesting 1,000 levels deep, an alias bomb)
or textual (truncation, a tab, a duplicated line, raw bytes, non-UTF-8, an empty file). The
strategies give the bytes of a file to write.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_FILES = sorted((ROOT / "examples" / "scenarios").glob("*.yaml")) + sorted(
    (ROOT / "src" / "tether" / "evals" / "scenarios").glob("*.yaml"))

# Placeholders replaced in the dumped text by what yaml.safe_dump cannot write itself.
DEEP = "__deep_nesting__"
BOMB = "__alias_bomb__"
HUGE_INT = "__huge_int__"
_TEXTUAL = {
    DEEP: "[" * 1000 + "1" + "]" * 1000,
    BOMB: "[&a0 [x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)) + "]",
    HUGE_INT: "9" * 5000,
}

WEIRD: list[Any] = [
    None, True, False, 0, -1, -(10**9), 10**400, 2**63, 1e308, -1e308, float("inf"),
    float("-inf"), float("nan"), "", "x" * 100_000, "ch_0001", "[red]markup[/red]", [], {},
    [1, "a", None], {"a": {"b": [1]}}, {"kind": "error"}, DEEP, BOMB, HUGE_INT,
]

values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(WEIRD), st.integers(), st.floats(), st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in ``data``, the top included."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths(value, (*prefix, index))


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def structural(draw: st.DrawFn, data: Any) -> Any:
    """``data`` with one key deleted or renamed, or one value replaced, at any depth."""
    data = copy.deepcopy(data)
    path = draw(st.sampled_from(list(paths(data))))
    op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename"]))
    if not path:
        return copy.deepcopy(draw(values))
    parent = _parent(data, path)
    if op == "replace":
        parent[path[-1]] = copy.deepcopy(draw(values))
    elif op == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from([f"{path[-1]}_", "", "1", str(path[-1]).upper()]))] = \
            parent.pop(path[-1])
    return data


def _same_kind(value: Any, strings: list[str]) -> st.SearchStrategy[Any]:
    """Values of ``value``'s own kind, extremes included: what passes a type check and tests
    the bounds (and, when it loads, whatever runs on it)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.sampled_from([0, 1, -1, 2, 10**6, 10**15, -(10**15), 10**15 + 1]) | \
            st.integers(-(2**40), 2**40)
    if isinstance(value, float):
        return st.sampled_from([0.0, -0.0, 1e-300, 1.0, 1e15, 1e16, -1.0]) | \
            st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(value, str):
        return st.sampled_from(strings) | st.text(max_size=30) | st.just("y" * 50_000)
    if isinstance(value, list):
        return st.sampled_from([[], value + value, value[:1]])
    return st.just(value)


@st.composite
def typed(draw: st.DrawFn, data: Any) -> Any:
    """``data`` with one to four values replaced by values of the same kind, at any depth."""
    data = copy.deepcopy(data)
    strings = sorted({str(v) for p in paths(data) if isinstance(v := _get(data, p), str)}
                     | {"", "ch_0001", "cus_0001"})
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([p for p in paths(data) if p]))
        parent = _parent(data, path)
        parent[path[-1]] = copy.deepcopy(draw(_same_kind(parent[path[-1]], strings)))
    return data


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def typed_file(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """One of ``bases`` with values changed within their types (see :func:`typed`)."""
    data = draw(typed(yaml.safe_load(draw(st.sampled_from(bases)))))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9).encode()


@st.composite
def textual(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` truncated, with a tab, a duplicated or dropped line, raw bytes, or emptied."""
    lines = text.split(b"\n")
    at = draw(st.integers(0, max(len(lines) - 1, 0)))
    op = draw(st.sampled_from(["truncate", "tab", "duplicate", "drop", "bytes", "latin1",
                               "empty"]))
    if op == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    if op == "tab":
        lines[at] = b"\t" + lines[at]
    elif op == "duplicate":
        lines.insert(at, lines[at])
    elif op == "drop":
        del lines[at]
    elif op == "bytes":
        lines[at] += draw(st.binary(min_size=1, max_size=8))
    elif op == "latin1":
        lines[at] += "caf\u00e9".encode("latin-1")
    else:
        return b""
    return b"\n".join(lines)


@st.composite
def mutated_file(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """One of ``bases`` after one to three mutations."""
    text = draw(st.sampled_from(bases))
    if draw(st.integers(0, 3)) == 0:
        return draw(textual(text))
    data = yaml.safe_load(text)
    for _ in range(draw(st.integers(1, 3))):
        data = draw(structural(data))
    dumped = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9)
    for marker, replacement in _TEXTUAL.items():
        dumped = dumped.replace(marker, replacement)
    return dumped.encode()


#: Keys whose values are free-form (any YAML value is meaningful there): a boolean or a string
#: in place of a number is not an error under them.
FREE_FORM = frozenset({"equals", "known_facts", "replace", "metadata"})


@st.composite
def renumbered_file(draw: st.DrawFn, bases: list[bytes]) -> tuple[bytes, tuple[Any, ...]]:
    """One of ``bases`` with one number in a typed field replaced by a boolean or by the same
    number written as a string (``true`` for 1, ``"25"`` for 25), and the key path changed."""
    data = yaml.safe_load(draw(st.sampled_from(bases)))
    numeric = [p for p in paths(data) if p and not FREE_FORM & {str(k) for k in p}
               and isinstance(v := _get(data, p), int | float) and not isinstance(v, bool)]
    path = draw(st.sampled_from(numeric))
    old = _get(data, path)
    _parent(data, path)[path[-1]] = draw(st.sampled_from([True, False, str(old)]))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10**9).encode(), path
