"""The work-queue conformance kit, run against every store tether ships."""

from __future__ import annotations

import pytest

from tether.store.queue_conformance import QueueConformance


@pytest.mark.parametrize("check", QueueConformance.CHECKS)
def test_work_queue_conforms(store_factory, check: str) -> None:
    """Memory, SQLite and PostgreSQL stores each pass every check of the work-queue kit."""
    QueueConformance(store_factory, open_peer=store_factory.peer, max_examples=40).run(check)
