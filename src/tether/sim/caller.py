"""Which of the agent's tools a call of a simulated service is made for.

The agent's tools are wrapped (:func:`tether.sim.environment.instrument`) so that while a
tool's handler, reconciler or compensator runs, :func:`current_caller` names it; whatever
reaches a service then — a client of the environment, or an HTTP request through the gateway —
records the call as that tool's (:class:`~tether.sim.calls.ServiceCall`). Below both the
environment and the wire faces, which each read it.

>>> with calling(ToolCaller("issue_refund", "idempotent", "system", lookup=False)):
...     attribution(current_caller())["tool"]
'issue_refund'
>>> attribution(current_caller())["tool"]
''
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCaller", "attribution", "calling", "current_caller"]


@dataclass(frozen=True, slots=True)
class ToolCaller:
    """The agent's tool a service call is made for: its name, effect and trust, and whether
    the call is a lookup (the tool's reconciler, asking whether an earlier write landed)."""

    tool: str
    effect: str
    trust: str
    lookup: bool


#: The tool whose handler (or reconciler) is running: what a service call is attributed to.
_CALLER: ContextVar[ToolCaller | None] = ContextVar("tether_sim_caller", default=None)


def current_caller() -> ToolCaller | None:
    """The agent's tool whose handler (or reconciler) is running, if any."""
    return _CALLER.get()


@contextmanager
def calling(caller: ToolCaller) -> Iterator[None]:
    """Service calls made inside the block are ``caller``'s (in this task and those it
    starts)."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


def attribution(caller: ToolCaller | None) -> dict[str, Any]:
    """The fields of a :class:`~tether.sim.calls.ServiceCall` that name its caller (empty
    when no tool of the agent made the call)."""
    if caller is None:
        return {"tool": "", "effect": "", "trust": "", "lookup": False}
    return {"tool": caller.tool, "effect": caller.effect, "trust": caller.trust,
            "lookup": caller.lookup}
