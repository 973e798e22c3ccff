"""The model-driven agent loop, built on the durable runtime."""

from tether.agent.agent import Agent, AgentOutput, Task
from tether.agent.window import ContextWindow, drop_oldest, summarize_with, summarize_with_model

__all__ = [
    "Agent",
    "AgentOutput",
    "ContextWindow",
    "Task",
    "drop_oldest",
    "summarize_with",
    "summarize_with_model",
]
