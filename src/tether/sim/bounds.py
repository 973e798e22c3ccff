"""The bounds a scenario's numbers are held to, and the strict model its sections are read with.

Shared by :mod:`tether.sim.scenario` and the modules that define sections of a scenario on their
own (:mod:`tether.sim.persona_spec`), so that those need not import the scenario module that
imports them.

>>> from tether.sim.bounds import MAX_STEPS
>>> MAX_STEPS
1000
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tether.specs import StrictNumbers

__all__ = ["MAX_COUNT", "MAX_NUMBER", "MAX_PATIENCE", "MAX_SECONDS", "MAX_STEPS", "StrictSpec"]

#: The largest count a scenario may set (a call number, ``times``, ``n`` …).
MAX_COUNT = 1_000_000
#: The most steps an episode may take: the bound that keeps every episode finite.
MAX_STEPS = 1_000
#: The most questions a simulated user answers patiently.
MAX_PATIENCE = 1_000
#: The longest virtual time a scenario may name (windows, latencies, staleness): a year.
MAX_SECONDS = 366 * 86_400.0
#: The largest magnitude of any number in a scenario (seeded amounts, epoch times …).
MAX_NUMBER = 10**15


class StrictSpec(StrictNumbers, BaseModel):
    """A section of a scenario file: unknown keys refused, numbers numbers, and inf and nan
    refused for every float field (never a meaningful rate, time or limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
