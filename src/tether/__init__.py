"""tether: durable, exactly-once, governed runs for AI agents.

>>> import tether
>>> rt = tether.Runtime(store=tether.MemoryStore(), clock=tether.VirtualClock(), seed=7)

Every public name is imported on first use (:pep:`562`), so ``import tether`` costs a few
milliseconds and a worker pays only for the layers it touches: ``tether.Runtime`` loads the
runtime and the store contract, not the agent loop, the model adapters or the policy language.
``from tether import X`` and ``tether.X`` work as with eager imports; type checkers read the
imports below.
"""

from __future__ import annotations

from tether._lazy import attach as _attach
from tether._version import __version__

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
    from tether.agent.agent import Agent, AgentOutput, Task
    from tether.agent.memory_recall import MemoryRecall
    from tether.agent.window import ContextWindow, drop_oldest, summarize_with, summarize_with_model
    from tether.clock import Clock, SystemClock, VirtualClock
    from tether.errors import (
        AlreadyDecided,
        AmbiguousOutcome,
        AuthExpired,
        BudgetExceeded,
        ClientResultConflict,
        ClientResultRefused,
        ConcurrencyConflict,
        ContextOverflow,
        CorruptJournal,
        Crash,
        LeaseLost,
        MalformedOutput,
        ModelError,
        ModelUnavailable,
        NonDeterminismError,
        OwnershipLost,
        RateLimited,
        RecordedError,
        RunError,
        RunOwned,
        SchemaTooNew,
        StoreError,
        TetherError,
        ToolArgsInvalid,
        ToolFailed,
        ToolResultInvalid,
        TransientError,
        UnknownExecution,
        UnknownWorkflow,
        UsageError,
        WaitTimedOut,
    )
    from tether.events import RunStatus
    from tether.memory import Fact, Memory
    from tether.models.base import (
        Message,
        Model,
        ModelRequest,
        ModelResponse,
        ModelSettings,
        ToolCall,
        ToolSpec,
        Usage,
    )
    from tether.models.pricing import Price, PriceTable
    from tether.models.scripted import ScriptedModel
    from tether.policy.policy import Policy
    from tether.policy.request import Principal, Verdict
    from tether.runtime.breaker import Breakers, BreakerState, CircuitBreaker
    from tether.runtime.budgets import Budgets
    from tether.runtime.client_tools import ClientCall, ClientTool, client_tool
    from tether.runtime.context import RunContext
    from tether.runtime.failures import Domain, Failure, FailureType, classify
    from tether.runtime.journal import ProbePoint
    from tether.runtime.provenance import Sourced, Trust
    from tether.runtime.retry import Action, RetryPolicy, Rule
    from tether.runtime.runtime import RunResult, Runtime, Workflow, workflow
    from tether.runtime.tools import Effect, Tool, ToolContext, tool
    from tether.store.base import Durability, Lease, RunInfo, Store
    from tether.store.memory import MemoryStore
    from tether.store.open import open_store
    from tether.store.sqlite import SQLiteStore

__all__ = [
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

# Which module defines each public name (checked against __all__ by tests/test_exports.py).
_MODULES: dict[str, tuple[str, ...]] = {
    "tether.agent.agent": ("Agent", "AgentOutput", "Task"),
    "tether.agent.memory_recall": ("MemoryRecall",),
    "tether.agent.window": (
        "ContextWindow",
        "drop_oldest",
        "summarize_with",
        "summarize_with_model",
    ),
    "tether.clock": ("Clock", "SystemClock", "VirtualClock"),
    "tether.errors": (
        "AlreadyDecided",
        "AmbiguousOutcome",
        "AuthExpired",
        "BudgetExceeded",
        "ClientResultConflict",
        "ClientResultRefused",
        "ConcurrencyConflict",
        "ContextOverflow",
        "CorruptJournal",
        "Crash",
        "LeaseLost",
        "MalformedOutput",
        "ModelError",
        "ModelUnavailable",
        "NonDeterminismError",
        "OwnershipLost",
        "RateLimited",
        "RecordedError",
        "RunError",
        "RunOwned",
        "SchemaTooNew",
        "StoreError",
        "TetherError",
        "ToolArgsInvalid",
        "ToolFailed",
        "ToolResultInvalid",
        "TransientError",
        "UnknownExecution",
        "UnknownWorkflow",
        "UsageError",
        "WaitTimedOut",
    ),
    "tether.events": ("RunStatus",),
    "tether.memory": ("Fact", "Memory"),
    "tether.models.base": (
        "Message",
        "Model",
        "ModelRequest",
        "ModelResponse",
        "ModelSettings",
        "ToolCall",
        "ToolSpec",
        "Usage",
    ),
    "tether.models.pricing": ("Price", "PriceTable"),
    "tether.models.scripted": ("ScriptedModel",),
    "tether.policy.policy": ("Policy",),
    "tether.policy.request": ("Principal", "Verdict"),
    "tether.runtime.breaker": ("BreakerState", "Breakers", "CircuitBreaker"),
    "tether.runtime.budgets": ("Budgets",),
    "tether.runtime.client_tools": ("ClientCall", "ClientTool", "client_tool"),
    "tether.runtime.context": ("RunContext",),
    "tether.runtime.failures": ("Domain", "Failure", "FailureType", "classify"),
    "tether.runtime.journal": ("ProbePoint",),
    "tether.runtime.provenance": ("Sourced", "Trust"),
    "tether.runtime.retry": ("Action", "RetryPolicy", "Rule"),
    "tether.runtime.runtime": ("RunResult", "Runtime", "Workflow", "workflow"),
    "tether.runtime.tools": ("Effect", "Tool", "ToolContext", "tool"),
    "tether.store.base": ("Durability", "Lease", "RunInfo", "Store"),
    "tether.store.memory": ("MemoryStore",),
    "tether.store.open": ("open_store",),
    "tether.store.sqlite": ("SQLiteStore",),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt ``tether.X`` stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
