"""A module whose import fails, as a user's module with a bug in it would."""

raise RuntimeError("the agent module is broken at import")
