"""The session conformance kit, run against every store tether ships."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tether.errors import UsageError
from tether.events import Event, RunStatus
from tether.sessions.conformance import SessionConformance
from tether.store.base import Lease, RunInfo
from tether.store.memory import MemoryStore


@pytest.mark.parametrize("check", SessionConformance.CHECKS)
def test_sessions_conform_on_every_store(store_factory: Any, check: str) -> None:
    """Memory, SQLite (a file, each peer its own connection) and PostgreSQL stores each hold
    sessions as the kit's every check demands."""
    SessionConformance(store_factory, open_peer=store_factory.peer, max_examples=10).run(check)


def test_an_unknown_check_is_a_usage_error() -> None:
    """Naming a check the kit does not have says which it has."""
    with pytest.raises(UsageError, match="choose from"):
        SessionConformance(MemoryStore).run("no_such_check")


class LastWriterWinsStore(MemoryStore):
    """A broken store: an append at a stale seq is renumbered and stored instead of refused."""

    def append(self, run_id: str, events: Sequence[Event], *, expected_last_seq: int,
               sync: bool = False, lease: Lease | None = None) -> None:
        info = self.get_run(run_id)
        last = 0 if info is None else info.last_seq
        if last != expected_last_seq and last > 0:
            events = [e.model_copy(update={"seq": last + i}) for i, e in enumerate(events, 1)]
            expected_last_seq = last
        super().append(run_id, events, expected_last_seq=expected_last_seq, sync=sync,
                       lease=lease)


class UnlistedStore(MemoryStore):
    """A broken store: runs are held but never listed."""

    def list_runs(self, *, status: RunStatus | Sequence[RunStatus] | None = None,
                  limit: int = 1000) -> list[RunInfo]:
        return []


@pytest.mark.parametrize(("broken", "check", "said"), [
    (LastWriterWinsStore, "revision_conflicts", "expected one success and one SessionConflict"),
    (UnlistedStore, "turn_runs_visible", "not listed as completed"),
])
def test_the_kit_catches_a_store_that_breaks_the_contract(
        broken: type[MemoryStore], check: str, said: str) -> None:
    """A store without compare-and-set, or one that hides runs, fails the check for it."""
    with pytest.raises(AssertionError, match=said):
        SessionConformance(broken).run(check)
