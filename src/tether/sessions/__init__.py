"""Sessions: durable conversations across runs (see :mod:`tether.sessions.session`).

This package sits above :mod:`tether.agent` and below :mod:`tether.sim`: it may import the
agent, runtime, store, events and memory layers; nothing below it imports it.
"""

from __future__ import annotations

import sys

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
