"""tether: durable, exactly-once, governed runs for AI agents.

>>> import tether
>>> rt = tether.Runtime(store=tether.MemoryStore(), clock=tether.VirtualClock(), seed=7)
"""

from tether.clock import Clock, SystemClock, VirtualClock
from tether.errors import (
    AmbiguousOutcome,
    ConcurrencyConflict,
    CorruptJournal,
    Crash,
    NonDeterminismError,
    RecordedError,
    RunError,
    SchemaTooNew,
    StoreError,
    TetherError,
    ToolArgsInvalid,
    ToolFailed,
    ToolResultInvalid,
    UnknownWorkflow,
    UsageError,
    WaitTimedOut,
)
from tether.events import RunStatus
from tether.runtime.context import RunContext
from tether.runtime.journal import ProbePoint
from tether.runtime.runtime import RunResult, Runtime, Workflow, workflow
from tether.runtime.tools import Effect, Tool, ToolContext, tool
from tether.store.base import Durability, RunInfo, Store
from tether.store.memory import MemoryStore
from tether.store.open import open_store
from tether.store.sqlite import SQLiteStore

__version__ = "0.1.0"

__all__ = [
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
