"""Batch validation shared by every store."""

from __future__ import annotations

import pytest

from tether import MemoryStore, UsageError
from tether.events import RunStarted


@pytest.mark.parametrize("run_id", ["", "run\x00id"])
def test_run_ids_must_be_non_empty_and_free_of_nul(run_id: str) -> None:
    store = MemoryStore()
    started = RunStarted(seq=1, at=0.0, workflow="w", input=None, seed=1)
    with pytest.raises(UsageError, match="NUL"):
        store.append(run_id, [started], expected_last_seq=0)
    assert store.list_runs() == []
