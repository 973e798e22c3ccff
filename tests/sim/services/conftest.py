"""Fixtures for the simulated services: a fresh world per test."""

from __future__ import annotations

import pytest

from tether.sim.world import World

# The default virtual clock starts at 2026-01-01T00:00:00Z, a Thursday.
START = 1_767_225_600.0
HOUR_S = 3600.0
DAY_S = 86_400.0


@pytest.fixture
def world() -> World:
    """A world with seed 7 and the default virtual clock."""
    return World(seed=7)
