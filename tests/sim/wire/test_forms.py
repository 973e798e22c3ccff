"""Stripe form decoding: nested keys into dicts and lists, malformed keys refused by name, and
a round trip through the stripe SDK's own encoder."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from tether.sim.wire.forms import FormError, as_mapping, decode_form, parse_pairs


def decoded(body: str) -> dict[str, Any]:
    return decode_form(parse_pairs(body))


def sdk_encoded(params: dict[str, Any]) -> str:
    """What stripe-python 16 sends: its encoder, urlencoded, brackets left readable
    (``_APIRequestor._args_for_request_with_retries``)."""
    return urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")


def test_nested_keys_become_dicts_and_lists() -> None:
    """Bracketed keys nest: mapping keys, indexed lists and appended lists."""
    assert decoded("amount=500&metadata[order]=1042&metadata[note]=&expand[]=charge"
                   "&expand[]=customer&items[1][price]=q&items[0][price]=p&items[0][qty]=2") == {
        "amount": "500", "metadata": {"order": "1042", "note": ""},
        "expand": ["charge", "customer"],
        "items": [{"price": "p", "qty": "2"}, {"price": "q"}]}


def test_appended_objects_start_a_new_element_when_a_field_repeats() -> None:
    """``items[][price]=a&items[][qty]=1&items[][price]=b`` is two items, as Rack reads it."""
    assert decoded("items[][price]=a&items[][qty]=1&items[][price]=b") == {
        "items": [{"price": "a", "qty": "1"}, {"price": "b"}]}


def test_percent_encoded_brackets_and_values_decode() -> None:
    """Strictly encoded brackets (``%5B``) and encoded values read like literal ones."""
    assert decoded("metadata%5Bk%5D=a%26b+c") == {"metadata": {"k": "a&b c"}}


@pytest.mark.parametrize(("body", "key"), [
    ("metadata[order=1", "metadata[order"),
    ("metadata]=1", "metadata]"),
    ("[order]=1", "[order]"),
    ("a[b]c=1", "a[b]c"),
    ("a[b][=1", "a[b]["),
    ("=1", ""),
    ("a=1&a=2", "a"),
    ("a[x]=1&a[x]=2", "a[x]"),
    ("a=1&a[x]=2", "a[x]"),
    ("a[x]=1&a=2", "a"),
    ("a[]=1&a[0]=2", "a[0]"),
    ("a[0]=1&a[x]=2", "a[x]"),
    ("a[0]=1&a[2]=2", "a"),
    ("a[1]=1", "a"),
])
def test_malformed_keys_are_refused_naming_the_key(body: str, key: str) -> None:
    """A key that cannot be read without guessing is a FormError naming that key."""
    with pytest.raises(FormError) as info:
        decoded(body)
    assert info.value.key == key
    assert repr(key) in str(info.value)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    """Bytes that are not UTF-8 are a FormError, not garbled text."""
    with pytest.raises(FormError, match="UTF-8"):
        parse_pairs(b"name=%ff&x=\xff")


def test_an_indexed_mapping_reads_back_as_a_mapping() -> None:
    """``metadata[0]=a`` decodes as a list (the wire cannot tell) and as_mapping restores it."""
    value = decoded("metadata[0]=a&metadata[1]=b")["metadata"]
    assert value == ["a", "b"] and as_mapping(value) == {"0": "a", "1": "b"}


# -- the round trip through the SDK's encoder ------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_characters="[]"),
                 min_size=1, max_size=8).filter(lambda s: not s.isdigit())
_leaves = st.one_of(st.text(st.characters(codec="utf-8"), max_size=8),
                    st.integers(-10**12, 10**12), st.booleans())


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.dictionaries(_names, inner, min_size=1, max_size=3)), max_leaves=8)


def _as_sent(value: Any) -> Any:
    """The value as the SDK's encoder puts it on the wire: every leaf a string, a boolean
    lower case — except one that is directly an element of a list, which the encoder yields
    as is (``str(True)``: ``"True"``)."""
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_element_as_sent(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _element_as_sent(value: Any) -> Any:
    if isinstance(value, dict):
        return _as_sent(value)
    if isinstance(value, list):  # encoded as a mapping by index: its values as values
        return [_as_sent(v) for v in value]
    return str(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_names, _values(_leaves), max_size=5))
def test_round_trip_through_the_sdk_encoder(params: dict[str, Any]) -> None:
    """Whatever the stripe SDK encodes (nested dicts, lists of dicts, lists of lists, odd
    characters) decodes back to the same structure with string leaves."""
    assert decoded(sdk_encoded(params)) == _as_sent(params)
