"""The viewer's reads over every store kind (memory, SQLite, PostgreSQL): the runs list, a
run's trace, the approvals inbox, and the index marks live updates compare."""

from __future__ import annotations

from tests.conftest import StoreFactory
from tether.policy.approvals import Approvals
from tether.view import data
from tether.view.watch import files_stamp

from .runs import fill


def test_the_viewer_reads_every_store_kind(store_factory: StoreFactory) -> None:
    """Runs newest first, a run's trace, the held call; a decision made through another
    handle on the store moves that run's mark."""
    store = store_factory()
    fill(store)
    assert [r["run_id"] for r in data.runs_page(store)["runs"]] == [
        "run-fail", "run-wait", "run-done"]
    assert [r["run_id"] for r in data.runs_page(store, status="waiting")["runs"]] == [
        "run-wait"]
    detail = data.run_detail(store, "run-done", "URL")
    assert detail["totals_line"].endswith("1 retry, 3 model calls, 2 tool calls")
    [held] = data.approvals_data(store, "URL")
    assert held["approve"] == "tether approve run-wait --store URL --step 6 --role supervisor"
    before = data.index_marks(store)
    Approvals(store_factory.peer(store)).approve("run-wait", by="sam", role="supervisor")
    assert data.changed_runs(before, data.index_marks(store)) == ["run-wait"]
    # Only a store kept in files has a stamp to skip unchanged rounds by.
    assert (files_stamp(store) is not None) == (store_factory.kind == "sqlite")
