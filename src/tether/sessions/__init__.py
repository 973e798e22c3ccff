"""Sessions: durable conversations across runs (see :mod:`tether.sessions.session`).

This package sits above :mod:`tether.agent` and below :mod:`tether.sim`: it may import the
agent, runtime, store, events and memory layers; nothing below it imports it.
"""

from tether.sessions.restore import validated
from tether.sessions.session import Session, Sessions, TurnResult
from tether.sessions.state import SESSION_WORKFLOW, Resource, SessionStatus, Turn
from tether.sessions.tools import session_tools
from tether.sessions.triggers import DueSlot, Fired, due, fire, fire_due, fire_webhook, on_decision

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
