"""Errors round-trip through the journal and the tree in errors.py's docstring stays true."""

from __future__ import annotations

import pickle

import tether.errors as errors
from tether.errors import (
    ConcurrencyConflict,
    RecordedError,
    ToolFailed,
    WaitTimedOut,
    error_record,
    rebuild_error,
)


class NeedsTwo(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


class NeedsNew(Exception):
    def __new__(cls, a: str, b: str) -> NeedsNew:
        return super().__new__(cls, f"{a}/{b}")

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def test_tether_errors_round_trip_with_their_data() -> None:
    """A journaled ToolFailed comes back with tool, failure class and error type."""
    original = ToolFailed("boom", tool="refund", failure="permanent_tool_error",
                          error_type="KeyError")
    rebuilt = rebuild_error(error_record(original))
    assert isinstance(rebuilt, ToolFailed)
    assert (rebuilt.tool, rebuilt.failure, rebuilt.error_type, str(rebuilt)) == (
        "refund", "permanent_tool_error", "KeyError", "boom")
    assert isinstance(rebuild_error(error_record(WaitTimedOut("late", key="k"))), WaitTimedOut)


def test_builtin_and_user_errors_are_rebuilt_or_stood_in_for() -> None:
    """Builtins come back as themselves; unbuildable types become RecordedError with the facts."""
    rebuilt = rebuild_error(error_record(KeyError("order-1")))
    assert isinstance(rebuilt, KeyError) and rebuilt.args == ("order-1",)
    # A constructor that does not take its own args back: built bare, with the same args.
    bare = rebuild_error(error_record(NeedsTwo("x", "y")))
    assert isinstance(bare, NeedsTwo) and bare.args == ("x/y",)
    odd = rebuild_error(error_record(NeedsNew("x", "y")))
    assert isinstance(odd, RecordedError)
    assert odd.error_type.endswith("NeedsNew") and "x/y" in str(odd)
    ghost = rebuild_error({"type": "nowhere.Missing", "message": "gone"})
    assert isinstance(ghost, RecordedError) and ghost.error_type == "nowhere.Missing"


def test_errors_pickle() -> None:
    """Errors cross process boundaries (campaign workers) intact."""
    err = pickle.loads(pickle.dumps(ConcurrencyConflict("lost race")))
    assert isinstance(err, ConcurrencyConflict) and str(err) == "lost race"


def test_docstring_tree_names_every_exception() -> None:
    """Every exception class in errors.py appears in the module docstring's drawing."""
    doc = errors.__doc__ or ""
    classes = [
        name for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    ]
    assert classes and [c for c in classes if c not in doc] == []
