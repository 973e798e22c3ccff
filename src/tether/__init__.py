"""tether: durable, exactly-once, governed runs for AI agents.

>>> import tether
>>> rt = tether.Runtime(store=tether.MemoryStore(), clock=tether.VirtualClock(), seed=7)
"""

from tether.agent import (
    Agent,
    AgentOutput,
    ContextWindow,
    MemoryRecall,
    Task,
    drop_oldest,
    summarize_with,
    summarize_with_model,
)
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
from tether.policy import Policy, Principal, Verdict
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

__version__ = "0.1.0"

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
