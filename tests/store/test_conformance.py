"""The store conformance kit, run against every store tether ships."""

from __future__ import annotations

import pytest

from tether.store.conformance import StoreConformance


@pytest.mark.parametrize("check", StoreConformance.CHECKS)
def test_store_conforms(store_factory, check: str) -> None:
    """Memory, SQLite and PostgreSQL stores each pass every check of the conformance kit."""
    StoreConformance(store_factory, open_peer=store_factory.peer).run(check)
