"""The scripted and model-played users, importable under their earlier module name.

They live in :mod:`tether.sim.users`, which also reads a scenario's ``user:`` mapping.
"""

from __future__ import annotations

from tether.sim.users import ModelUser, SimulatedUser, User

__all__ = ["ModelUser", "SimulatedUser", "User"]
