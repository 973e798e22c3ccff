"""Workflow names are what the journal records and what a worker looks runs up by: they must
not depend on where a file lies on the machine that loaded it."""

from __future__ import annotations

from pathlib import Path

from tether.imports import import_object

_FLOW = '''
from tether import workflow

@workflow
async def settle(ctx, order_id: str) -> str:
    return order_id
'''


def test_a_workflow_loaded_by_path_is_named_after_its_file(tmp_path: Path) -> None:
    """Two copies of one file in different folders (two checkouts, two machines) give their
    workflow the same name, ``<file stem>.<function>``, not a digest of the path."""
    names = []
    for folder in ("checkout_a", "checkout_b"):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "billing_flows.py"
        path.write_text(_FLOW)
        names.append(import_object(f"{path}:settle", None, what="workflow").name)
    assert names == ["billing_flows.settle", "billing_flows.settle"]
