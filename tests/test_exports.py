"""The public API is pinned: changing it must be a deliberate edit of this list."""

import tether

EXPECTED = [
    "AmbiguousOutcome",
    "Clock",
    "ConcurrencyConflict",
    "CorruptJournal",
    "Crash",
    "Durability",
    "Effect",
    "MemoryStore",
    "NonDeterminismError",
    "ProbePoint",
    "RecordedError",
    "RunContext",
    "RunError",
    "RunInfo",
    "RunResult",
    "RunStatus",
    "Runtime",
    "SQLiteStore",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "SystemClock",
    "TetherError",
    "Tool",
    "ToolArgsInvalid",
    "ToolContext",
    "ToolFailed",
    "ToolResultInvalid",
    "UnknownWorkflow",
    "UsageError",
    "VirtualClock",
    "WaitTimedOut",
    "Workflow",
    "__version__",
    "open_store",
    "tool",
    "workflow",
]


def test_all_is_pinned() -> None:
    """`tether.__all__` lists exactly the pinned names."""
    assert tether.__all__ == EXPECTED


def test_all_is_sorted_and_importable() -> None:
    """Every exported name exists and the list stays sorted."""
    assert sorted(tether.__all__) == tether.__all__
    for name in tether.__all__:
        assert hasattr(tether, name), name


def test_public_objects_are_documented() -> None:
    """Every exported class and function carries a docstring."""
    undocumented = [
        name for name in tether.__all__
        if callable(getattr(tether, name)) and not (getattr(tether, name).__doc__ or "").strip()
    ]
    assert undocumented == []
