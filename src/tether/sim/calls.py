"""What an agent's tools did to the simulated world: one record per service call.

Every call a tool makes through a client of :class:`~tether.sim.environment.Environment`
(``env.client("payments").create_refund(...)``) is recorded as a :class:`ServiceCall`: which of
the agent's tools made it and that tool's effect class and trust, the service operation it
reached, the arguments, whether it carried an idempotency key, what came back (or the error),
and which ledger effects it caused. The suites read a fault-free probe episode's calls to choose
their targets from what *this* agent does, and the invariants use them to tie each ledger effect
to the tool call that caused it — never a tool's name written into the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServiceCall"]


@dataclass(frozen=True, slots=True)
class ServiceCall:
    """One call of a simulated service's operation, as the agent's client made it."""

    #: The agent's tool whose handler (or reconciler) made the call; ``""`` outside any tool.
    tool: str
    #: That tool's effect class: ``read``, ``idempotent``, ``reconcilable`` or ``unsafe``.
    effect: str
    #: That tool's declared trust (``system``, ``user``, ``retrieved``, ...).
    trust: str
    #: ``service.operation``: the fault target this call was counted under.
    target: str
    #: The call's arguments by parameter name, as JSON-ready data.
    args: dict[str, Any]
    #: An idempotency key was passed (non-empty).
    keyed: bool
    #: What the agent received (JSON-ready, after any fault transformed it); ``None`` on error.
    response: Any = None
    #: ``""``, or the exception the agent's tool saw, as ``Type: message``.
    error: str = ""
    #: The ledger sequence numbers of the effects this call caused.
    effects: tuple[int, ...] = field(default=())
    #: Whether the call came from a reconciler (a lookup of an ambiguous write) rather than
    #: the tool's handler.
    lookup: bool = False

    def as_data(self) -> dict[str, Any]:
        return {"tool": self.tool, "effect": self.effect, "trust": self.trust,
                "target": self.target, "args": self.args, "keyed": self.keyed,
                "response": self.response, "error": self.error,
                "effects": list(self.effects), "lookup": self.lookup}
