"""The model-driven agent loop, built on the durable runtime."""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
    from tether.agent.agent import Agent, AgentOutput, Task
    from tether.agent.memory_recall import MemoryRecall
    from tether.agent.window import ContextWindow, drop_oldest, summarize_with, summarize_with_model

__all__ = [
    "Agent",
    "AgentOutput",
    "ContextWindow",
    "MemoryRecall",
    "Task",
    "drop_oldest",
    "summarize_with",
    "summarize_with_model",
]

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "Agent": "tether.agent.agent",
    "AgentOutput": "tether.agent.agent",
    "ContextWindow": "tether.agent.window",
    "MemoryRecall": "tether.agent.memory_recall",
    "Task": "tether.agent.agent",
    "drop_oldest": "tether.agent.window",
    "summarize_with": "tether.agent.window",
    "summarize_with_model": "tether.agent.window",
}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
