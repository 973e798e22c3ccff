"""Tiny agent factories of the kind a user writes, for the simulator's own-agent tests."""
