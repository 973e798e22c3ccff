"""`tether trace RUN`: the tree and totals of a run in a real SQLite store, and its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.tracing import agent_journal, refund_run
from tether import SQLiteStore
from tether.cli import app

runner = CliRunner()


def make_store(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    refund_id, agent_id = refund_run(store), agent_journal(store)
    store.close()
    return path, refund_id, agent_id


def test_trace_prints_the_tree_and_totals(tmp_path: Path) -> None:
    """The text form names the run, its calls and decisions, and ends with the totals."""
    path, refund_id, agent_id = make_store(tmp_path)
    result = runner.invoke(app, ["trace", agent_id, "--store", str(path)])
    assert result.exit_code == 0, result.output
    for text in ("support_agent run_agent completed", "chat openai:gpt-4o", "lookup_order",
                 "decision recover", "5.75 s, 1,234 tokens, $0.042, 1 retry",
                 "failures: rate_limited 1"):
        assert text in result.output, text
    refund = runner.invoke(app, ["trace", refund_id, "--store", str(path)])
    assert refund.exit_code == 0, refund.output
    assert "tool issue_refund" in refund.output and "32.20 s, 0 tokens" in refund.output


def test_trace_json_is_the_machine_form(tmp_path: Path) -> None:
    """--json prints the documented shape: run, status, totals, items with children."""
    path, _, agent_id = make_store(tmp_path)
    result = runner.invoke(app, ["trace", agent_id, "--store", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["run_id"], data["workflow"], data["status"]) == (
        agent_id, "support_agent", "completed")
    assert data["totals"]["total_tokens"] == 1234 and data["totals"]["cost_usd"] == 0.042
    assert [(i["kind"], i["pos"]) for i in data["items"]] == [
        ("model", 0), ("sleep", 2), ("model", 3), ("tool", 4), ("model", 5)]
    assert data["items"][0]["children"][0]["name"] == "recover"


def test_an_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    """A run the store does not hold: one error line naming it, exit 2."""
    path, _, _ = make_store(tmp_path)
    result = runner.invoke(app, ["trace", "nope", "--store", str(path)])
    assert result.exit_code == 2 and "no run 'nope'" in result.output


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not a store gives an error line and exit 2, not a traceback."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["trace", "run_1", "--store", str(junk)])
    assert result.exit_code == 2 and "error:" in result.output
