"""The model-driven agent loop, built on the durable runtime."""

from __future__ import annotations

import sys

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

    def __getattr__(name: str) -> object:
        module = _WHERE.get(name)
        if module is not None:
            # __import__, as the import statement does (importlib.import_module would hide
            # the module from ``python -X importtime``)
            __import__(module)
            value = getattr(sys.modules[module], name)
            globals()[name] = value  # later lookups skip this function
            return value
        if not name.startswith("_"):  # ``package.submodule``, as eager imports used to allow
            try:
                __import__(f"{__name__}.{name}")
                return sys.modules[f"{__name__}.{name}"]
            except ModuleNotFoundError as e:
                if e.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
