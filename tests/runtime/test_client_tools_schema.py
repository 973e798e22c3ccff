"""The result-schema check of client results agrees with the pydantic type it was written from."""

from __future__ import annotations

import json
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from tether.runtime.schema_check import problems


class Item(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(ge=1)


class Result(BaseModel):
    id: str
    status: Literal["ok", "pending"]
    items: list[Item]
    note: str | None = None
    meta: dict[str, int] = {}
    score: float


SCHEMA = Result.model_json_schema()

items = st.builds(Item, sku=st.text(min_size=1, max_size=5), qty=st.integers(1, 10**6))
results = st.builds(
    Result, id=st.text(max_size=8), status=st.sampled_from(["ok", "pending"]),
    items=st.lists(items, max_size=3), note=st.none() | st.text(max_size=5),
    meta=st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    score=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5).map(float))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=3)
    | st.sampled_from(["ok", "pending", "id", "items", "sku", "qty", "score"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "status", "items", "note", "meta", "score", "sku",
                                       "qty", "x"]), inner, max_size=6),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(results)
def test_every_valid_result_passes(value: Result) -> None:
    """A result the type accepts, as JSON, is never refused (no false refusal)."""
    data = json.loads(value.model_dump_json())
    assert problems(SCHEMA, data) == []


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_whatever_passes_the_schema_validates_as_the_type(value: Any) -> None:
    """Anything the schema check lets through is accepted by the pydantic type too (no
    false acceptance)."""
    if not problems(SCHEMA, value):
        Result.model_validate(value)


@settings(max_examples=300, deadline=None)
@given(results, st.sampled_from(["id", "status", "items", "note", "meta", "score", "x"]),
       json_values, st.booleans())
def test_a_mutated_result_passes_only_if_the_type_accepts_it(
        value: Result, name: str, replacement: Any, into_item: bool) -> None:
    """A valid result with one field (or one item's field) replaced by any JSON value: the
    schema check lets it through only if the pydantic type accepts it."""
    data = json.loads(value.model_dump_json())
    target = data["items"][0] if into_item and data["items"] else data
    target[name if target is data else ("sku" if name in ("id", "x") else "qty")] = replacement
    if not problems(SCHEMA, data):
        Result.model_validate(data)


@settings(max_examples=150, deadline=None)
@given(results, st.sampled_from(["id", "status", "items", "score"]),
       st.sampled_from([None, 7, "nope", [], {}, True]))
def test_a_broken_field_is_refused_with_its_path(value: Result, name: str, bad: Any) -> None:
    """A required field replaced by a value of the wrong shape is refused, naming the field."""
    data = json.loads(value.model_dump_json())
    data[name] = bad
    try:
        Result.model_validate(data)
    except ValidationError:
        found = problems(SCHEMA, data)
        assert found and any(f"$.{name}" in p for p in found), found


def test_missing_field_extra_field_and_bounds() -> None:
    """Required fields, closed objects and numeric/length bounds are checked."""
    closed = {"type": "object", "properties": {"a": {"type": "integer", "maximum": 3}},
              "required": ["a"], "additionalProperties": False}
    assert problems(closed, {}) == ["$: missing required field 'a'"]
    assert problems(closed, {"a": 1, "b": 2}) == ["$: unexpected field 'b'"]
    assert problems(closed, {"a": 4}) == ["$.a: must be at most 3, found 4"]
    assert problems({"type": "string", "pattern": "^ch_"}, "re_1")
    assert problems({"type": "integer"}, True)


def test_any_result_accepts_every_json_value() -> None:
    """A tool declared without a result type accepts whatever JSON the caller sends."""
    schema = TypeAdapter(Any).json_schema()
    for value in (None, 1, "x", [1, {"a": None}], {"k": [True]}):
        assert problems(schema, value) == []


def test_unresolvable_reference_refuses() -> None:
    """A $ref that cannot be followed refuses rather than accepting blind."""
    assert problems({"$ref": "https://example.com/schema.json"}, 1)
    assert problems({"$ref": "#/$defs/Missing"}, 1)
