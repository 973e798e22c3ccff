"""The simulated user of a scenario (its ``persona:`` section).

A module of its own because two others build on it: :mod:`tether.sim.scenario` reads it from a
file, and :mod:`tether.sim.users` plays it (the scenario module checks a scenario's ``user:``
section through the users module, so the users module may not import the scenario module).

>>> from tether.sim.persona_spec import Persona
>>> Persona(name="Ada", patience=2).style
'plain'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tether.sim.bounds import MAX_COUNT, MAX_PATIENCE, StrictSpec

__all__ = ["Persona"]


class Persona(StrictSpec):
    """The simulated user: who they are, what they want and know, how they behave."""

    name: str = "Customer"
    goal: str = ""
    known_facts: dict[str, Any] = Field(default_factory=dict)
    patience: int = Field(default=3, ge=1, le=MAX_PATIENCE)
    style: Literal["plain", "terse", "chatty", "angry"] = "plain"
    changes_mind_at: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    new_request: str = ""
