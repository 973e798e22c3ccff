"""Bounded YAML loading: plain data, or a UsageError naming the file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import yamlsafe
from tether.errors import UsageError

BOMB = "lol0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))


def refused(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        yamlsafe.load(text, where="spec.yaml")
    message = str(caught.value)
    assert message.startswith("spec.yaml: ") and "\n" not in message
    return message


def test_plain_documents_load_as_safe_load_would() -> None:
    """Mappings, lists, numbers, booleans, null and aliases load like yaml.safe_load."""
    text = "a: &x [1, 2.5, true, null, 0x1F, 1_000, .inf]\nb: *x\nc: {d: 'e'}\n"
    assert yamlsafe.load(text, where="f") == yaml.safe_load(text)
    assert yamlsafe.load("", where="f") is None


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    """Nine levels of nine aliases (387 million strings) stop at the node budget."""
    assert "expands to more than" in refused(BOMB)


def test_an_alias_inside_its_own_anchor_is_a_cycle() -> None:
    """A self-referencing list is refused instead of becoming a recursive object."""
    assert "cycle" in refused("a: &a [1, *a]")


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_nesting_1000_levels_deep_is_refused_without_recursion(opening: str) -> None:
    """1,000 levels of flow or block nesting end in a UsageError, not a RecursionError."""
    if opening == "- ":
        text = "".join("  " * i + "-\n" for i in range(1000)) + "  " * 1000 + "1\n"
    else:
        close = "]" if opening == "[" else "}"
        text = opening * 1000 + "1" + close * 1000
    assert f"nested deeper than {yamlsafe.MAX_DEPTH} levels" in refused(text)


def test_duplicate_keys_name_both_lines() -> None:
    """A repeated key is an error naming its path and the first line, not a silent overwrite."""
    assert refused("a:\n  b: 1\n  b: 2\n") == \
        "spec.yaml: line 3: a.b: duplicate key (first at line 2); each key may appear once"


@pytest.mark.parametrize(("text", "found"), [
    ("yes: 1", "the boolean True"), ("1: a", "the number 1"), ("~: a", "null"),
    ("[a]: b", "a mapping or list"), ("a: {2.5: x}", "the number 2.5"),
])
def test_keys_must_be_strings(text: str, found: str) -> None:
    """Non-string keys (YAML 1.1 reads yes: as True) are refused with a hint to quote them."""
    message = refused(text)
    assert "mapping keys must be strings" in message and found in message


@pytest.mark.parametrize("text", ["a: !!binary aGk=", "a: !!set {x}", "a: !!python/tuple [1]",
                                  "a: !custom 1", "a: !!timestamp 2026-01-05", "<<: {a: 1}"])
def test_only_plain_data_types(text: str) -> None:
    """Tags that build bytes, sets, dates or objects, and merge keys, are refused."""
    assert "not supported" in refused(text) or "unsupported tag" in refused(text)


def test_unquoted_dates_stay_strings() -> None:
    """A date or timestamp written without quotes is the text it looks like."""
    loaded = yamlsafe.load("d: 2026-01-05\nt: 2026-01-05T09:00:00Z\n", where="f")
    assert loaded == {"d": "2026-01-05", "t": "2026-01-05T09:00:00Z"}


def test_a_number_python_cannot_parse_is_a_usage_error() -> None:
    """A 5,000-digit integer is refused (Python's int() limit), naming its key."""
    assert refused("a:\n  b: " + "9" * 5000).startswith("spec.yaml: line 2: a.b: cannot read")


def test_two_documents_are_refused() -> None:
    """A second document (---) is an error, as in yaml.safe_load."""
    assert "second" in refused("a: 1\n---\nb: 2\n")


def test_files_non_utf8_too_large_missing(tmp_path: Path) -> None:
    """load_file refuses non-UTF-8 bytes, files over MAX_BYTES and unreadable paths."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9".encode("latin-1"))
    with pytest.raises(UsageError, match=r"not UTF-8 text \(byte 0xe9 at offset 9\)"):
        yamlsafe.load_file(latin, "scenario")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * yamlsafe.MAX_BYTES)
    with pytest.raises(UsageError, match="larger than"):
        yamlsafe.load_file(big, "scenario")
    with pytest.raises(UsageError, match="cannot read the scenario file"):
        yamlsafe.load_file(tmp_path / "missing.yaml", "scenario")


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_input_loads_or_is_a_usage_error(raw: bytes | str) -> None:
    """Arbitrary text or bytes give data or a one-line UsageError, never another exception."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    try:
        yamlsafe.load(text, where="spec.yaml")
    except UsageError as exc:
        assert str(exc).startswith("spec.yaml: ") and "\n" not in str(exc)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(tag=st.sampled_from(["!!int", "!!float", "!!bool", "!!null", "!!str", "!!timestamp",
                            "!!binary", "!", "!!map", "!!seq"]),
       value=st.text(alphabet="0123456789abcdefxo.+-_:e yYnN~", max_size=12))
def test_explicit_tags_on_any_text_load_or_are_usage_errors(tag: str, value: str) -> None:
    """An explicit scalar tag on text of another type (!!bool maybe) is a UsageError."""
    try:
        yamlsafe.load(f"a: {tag} '{value}'\n", where="spec.yaml")
    except UsageError as exc:
        assert str(exc).startswith("spec.yaml: ") and "\n" not in str(exc)
