"""Sequential, readable ids (``re_0001``) that never collide with ids seeded by a scenario."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["IdCounter"]


class IdCounter:
    """Hands out ``{prefix}{n:04d}`` in order, skipping ids already taken.

    Ids come from a counter rather than a random stream so that a trajectory reads well and
    adding a draw elsewhere never renames an object.

    >>> ids = IdCounter("re_", taken=["re_0001"])
    >>> ids.new(), ids.new()
    ('re_0002', 're_0003')
    """

    def __init__(self, prefix: str, taken: Iterable[str] = (), width: int = 4) -> None:
        self.prefix = prefix
        self.width = width
        self._taken = set(taken)
        self._n = 0

    def take(self, existing: str) -> None:
        """Mark ``existing`` (a seeded id) as used."""
        self._taken.add(existing)

    def new(self) -> str:
        """The next free id."""
        while True:
            self._n += 1
            candidate = f"{self.prefix}{self._n:0{self.width}d}"
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
