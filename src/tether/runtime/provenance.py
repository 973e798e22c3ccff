"""Where content comes from and how far it is trusted.

Every observation that enters a model's context carries a *source* (``user``, ``system``, a tool's
name, ``kb:refund-policy`` …) and a :class:`Trust` level. Tools declare the trust of what they
return (``tool(trust="retrieved")``); a handler can override it per call by returning
:class:`Sourced`. The levels, most trusted first:

==============  ===========================================================================
``system``      tether's own configuration and the agent's instructions; systems of record
``user``        the authenticated user's own request
``agent``       another agent's output
``retrieved``   retrieved documents (knowledge base, files), written by someone else
``external``    content from outside: email bodies, web pages, third-party messages
==============  ===========================================================================

A prompt cannot raise trust: the level comes from where the runtime got the content, never
from what the content says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Sourced", "Trust"]


class Trust(StrEnum):
    """How far content is trusted; compare with :meth:`rank` (higher is more trusted)."""

    SYSTEM = "system"
    USER = "user"
    AGENT = "agent"
    RETRIEVED = "retrieved"
    EXTERNAL = "external"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Trust | str) -> bool:
        return self.rank >= Trust(other).rank


_RANKS = {Trust.SYSTEM: 4, Trust.USER: 3, Trust.AGENT: 2, Trust.RETRIEVED: 1, Trust.EXTERNAL: 0}


@dataclass(frozen=True, slots=True)
class Sourced:
    """A tool result with its own provenance, overriding the tool's declared trust.

    >>> Sourced({"body": "..."}, source="email:msg_123", trust="external").trust
    <Trust.EXTERNAL: 'external'>
    """

    value: Any
    source: str
    trust: Trust | str

    def __post_init__(self) -> None:
        object.__setattr__(self, "trust", Trust(self.trust))
