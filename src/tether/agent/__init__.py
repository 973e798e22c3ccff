"""The model-driven agent loop, built on the durable runtime."""

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
