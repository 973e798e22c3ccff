"""Sessions: durable conversations across runs (see :mod:`tether.sessions.session`).

This package sits above :mod:`tether.agent` and below :mod:`tether.sim`: it may import the
agent, runtime, store, events and memory layers; nothing below it imports it.
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
    from tether.sessions.restore import validated
    from tether.sessions.session import Session, Sessions, TurnResult
    from tether.sessions.state import SESSION_WORKFLOW, Resource, SessionStatus, Turn
    from tether.sessions.tools import session_tools
    from tether.sessions.triggers import (
        DueSlot,
        Fired,
        due,
        fire,
        fire_due,
        fire_webhook,
        on_decision,
    )

__all__ = [
    "SESSION_WORKFLOW",
    "DueSlot",
    "Fired",
    "Resource",
    "Session",
    "SessionStatus",
    "Sessions",
    "Turn",
    "TurnResult",
    "due",
    "fire",
    "fire_due",
    "fire_webhook",
    "on_decision",
    "session_tools",
    "validated",
]

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "DueSlot": "tether.sessions.triggers",
    "Fired": "tether.sessions.triggers",
    "Resource": "tether.sessions.state",
    "SESSION_WORKFLOW": "tether.sessions.state",
    "Session": "tether.sessions.session",
    "SessionStatus": "tether.sessions.state",
    "Sessions": "tether.sessions.session",
    "Turn": "tether.sessions.state",
    "TurnResult": "tether.sessions.session",
    "due": "tether.sessions.triggers",
    "fire": "tether.sessions.triggers",
    "fire_due": "tether.sessions.triggers",
    "fire_webhook": "tether.sessions.triggers",
    "on_decision": "tether.sessions.triggers",
    "session_tools": "tether.sessions.tools",
    "validated": "tether.sessions.restore",
}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
