"""The public API is pinned: changing it must be a deliberate edit of this list."""

import tether

EXPECTED = [
    "Action",
    "Agent",
    "AgentOutput",
    "AlreadyDecided",
    "AmbiguousOutcome",
    "AuthExpired",
    "BreakerState",
    "Breakers",
    "BudgetExceeded",
    "Budgets",
    "CircuitBreaker",
    "ClientCall",
    "ClientResultConflict",
    "ClientResultRefused",
    "ClientTool",
    "Clock",
    "ConcurrencyConflict",
    "ContextOverflow",
    "ContextWindow",
    "CorruptJournal",
    "Crash",
    "Domain",
    "Durability",
    "Effect",
    "Fact",
    "Failure",
    "FailureType",
    "Lease",
    "LeaseLost",
    "MalformedOutput",
    "Memory",
    "MemoryRecall",
    "MemoryStore",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelUnavailable",
    "NonDeterminismError",
    "OwnershipLost",
    "Policy",
    "Price",
    "PriceTable",
    "Principal",
    "ProbePoint",
    "RateLimited",
    "RecordedError",
    "RetryPolicy",
    "Rule",
    "RunContext",
    "RunError",
    "RunInfo",
    "RunOwned",
    "RunResult",
    "RunStatus",
    "Runtime",
    "SQLiteStore",
    "SchemaTooNew",
    "ScriptedModel",
    "Sourced",
    "Store",
    "StoreError",
    "SystemClock",
    "Task",
    "TetherError",
    "Tool",
    "ToolArgsInvalid",
    "ToolCall",
    "ToolContext",
    "ToolFailed",
    "ToolResultInvalid",
    "ToolSpec",
    "TransientError",
    "Trust",
    "UnknownExecution",
    "UnknownWorkflow",
    "Usage",
    "UsageError",
    "Verdict",
    "VirtualClock",
    "WaitTimedOut",
    "Workflow",
    "__version__",
    "classify",
    "client_tool",
    "drop_oldest",
    "open_store",
    "summarize_with",
    "summarize_with_model",
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


# tether.policy's names. Its rule and its decision are PolicyRule and PolicyDecision (issue 16):
# tether.Rule is the retry rule and tether.events.Decision the journal's decision event.
EXPECTED_POLICY = [
    "ArgumentFinding",
    "Observation",
    "Policy",
    "PolicyDecision",
    "PolicyRequest",
    "PolicyRule",
    "Principal",
    "PriorCall",
    "Verdict",
    "allow_tools",
    "argument_limit",
    "argument_provenance",
    "control_flow",
    "deny_tools",
    "environment_gate",
    "load_policy",
    "policy_from_dict",
    "predicate",
    "require_role",
    "taint_gate",
    "trace_arguments",
]


def test_policy_names_are_pinned() -> None:
    """`tether.policy.__all__` lists exactly the pinned names, each importable and documented,
    and the names it shares with `tether` are the same objects."""
    import tether.policy

    assert tether.policy.__all__ == EXPECTED_POLICY
    for name in EXPECTED_POLICY:
        value = getattr(tether.policy, name)
        assert (value.__doc__ or "").strip(), name
        if name in tether.__all__:
            assert getattr(tether, name) is value, name
