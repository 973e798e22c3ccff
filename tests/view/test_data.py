"""tether.view.data over a real SQLite store of real runs and a real campaign folder."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import RunContext, Runtime, SQLiteStore, VirtualClock, workflow
from tether.errors import UnknownExecution, UsageError
from tether.tracing.render import trace_to_json
from tether.tracing.timeline import build_trace
from tether.view import data

from .runs import HOSTILE, approve, resume


def test_runs_are_newest_first_with_counts_and_choices(store_path: Path) -> None:
    """The list is newest first; the filters' choices and counts cover the whole index."""
    store = SQLiteStore(store_path)
    page = data.runs_page(store)
    assert [r["run_id"] for r in page["runs"]] == ["run-fail", "run-wait", "run-done"]
    assert page["total"] == 3
    assert {k: v for k, v in page["counts"].items() if v} == {
        "completed": 1, "waiting": 1, "failed": 1}
    assert page["workflows"] == ["close", "support"] and page["queues"] == ["default"]
    done = page["runs"][2]
    assert (done["workflow"], done["status"], done["events"]) == ("support", "completed", 12)


def test_runs_filter_by_status_and_workflow(store_path: Path) -> None:
    """Filters narrow the list (the counts stay those of the whole store)."""
    store = SQLiteStore(store_path)
    failed = data.runs_page(store, status="failed")
    assert [r["run_id"] for r in failed["runs"]] == ["run-fail"]
    assert failed["counts"]["completed"] == 1
    support = data.runs_page(store, workflow="support")
    assert [r["run_id"] for r in support["runs"]] == ["run-wait", "run-done"]
    assert data.runs_page(store, workflow="support", status="failed")["total"] == 0
    assert data.runs_page(store, queue="elsewhere")["total"] == 0


def test_a_bad_status_or_page_is_a_usage_error(store_path: Path) -> None:
    """An unknown status names the choices; a negative offset or huge limit is refused."""
    store = SQLiteStore(store_path)
    with pytest.raises(UsageError, match=r"status must be one of queued, running.*found 'done'"):
        data.runs_page(store, status="done")
    with pytest.raises(UsageError, match="offset must be"):
        data.runs_page(store, offset=-1)
    with pytest.raises(UsageError, match="limit 1–500"):
        data.runs_page(store, limit=501)


def test_paging_walks_a_large_store_without_gaps(tmp_path: Path) -> None:
    """Pages of 50 over 130 runs cover each run once, newest first."""
    store = SQLiteStore(tmp_path / "many.db")
    clock = VirtualClock()

    @workflow(name="tick")
    async def tick(ctx: RunContext, n: int) -> int:
        return n

    runtime = Runtime(store, clock=clock, workflows=[tick])

    async def make() -> None:
        for n in range(130):
            clock.advance(1)
            await runtime.start(tick, n, run_id=f"r{n:03d}")

    asyncio.run(make())
    seen: list[str] = []
    for offset in (0, 50, 100):
        page = data.runs_page(store, offset=offset)
        assert page["total"] == 130
        seen += [r["run_id"] for r in page["runs"]]
    assert seen == [f"r{n:03d}" for n in reversed(range(130))]


def test_a_run_is_its_trace_and_journal(store_path: Path) -> None:
    """A run's detail holds ``tether trace --json``'s data, its input, result and journal."""
    store = SQLiteStore(store_path)
    detail = data.run_detail(store, "run-done", str(store_path))
    assert detail["trace"] == trace_to_json(build_trace("run-done", store.read("run-done")))
    items = detail["trace"]["items"]
    assert [(i["kind"], i["name"]) for i in items] == [
        ("model", "scripted"), ("decision", "policy"), ("tool", "lookup_order"),
        ("model", "scripted"), ("decision", "policy"), ("tool", "issue_refund"),
        ("model", "scripted")]
    lookup, refund = items[2], items[5]
    assert lookup["retries"] == 1 and lookup["failures"] == ["transient_tool_error"]
    assert refund["detail"] == "idempotent"  # the effect class
    assert items[0]["input_tokens"] + items[0]["output_tokens"] > 0 and items[0]["cost_usd"] > 0
    assert detail["totals_line"].endswith("1 retry, 3 model calls, 2 tool calls")
    assert detail["input"]["text"] == "refund A-1 1250"
    assert detail["result"]["answer"] == "Refunded. " + HOSTILE  # raw: escaping is the page's
    assert [e["seq"] for e in detail["journal"]] == list(range(1, 13))
    assert detail["journal"][0]["kind"] == "run_started" and detail["approvals"] == []


def test_a_waiting_run_shows_its_wait_and_the_failed_one_its_error(store_path: Path) -> None:
    """The held call is a pending wait with its approval; the failed run carries its error."""
    store = SQLiteStore(store_path)
    waiting = data.run_detail(store, "run-wait", str(store_path))
    wait = waiting["trace"]["items"][-1]
    assert (wait["kind"], wait["name"], wait["status"]) == ("wait", "approval:6", "pending")
    assert [a["step"] for a in waiting["approvals"]] == [6]
    failed = data.run_detail(store, "run-fail", str(store_path))
    assert failed["trace"]["status"] == "failed"
    assert failed["trace"]["error"]["data"]["error_type"] == "ValueError"
    with pytest.raises(UnknownExecution, match="no run 'nope'"):
        data.run_detail(store, "nope", str(store_path))


def test_the_approvals_command_shown_decides_the_call(store_path: Path) -> None:
    """The inbox lists the held call, and its approve command, run as shown, approves it."""
    from tether.cli import app

    store = SQLiteStore(store_path)
    [pending] = data.approvals_data(store, str(store_path))
    assert (pending["run_id"], pending["tool"], pending["role"]) == (
        "run-wait", "issue_refund", "supervisor")
    assert pending["args"]["amount_cents"] == 72_000
    assert pending["approve"] == (f"tether approve run-wait --store {store_path} --step 6 "
                                  "--role supervisor")
    assert pending["deny"] == f"tether deny run-wait --store {store_path} --step 6"
    words = shlex.split(pending["approve"])
    result = CliRunner().invoke(app, [*words[1:], "--by", "sam", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["by"] == "sam"
    assert data.approvals_data(store, str(store_path)) == []


def test_index_marks_move_with_the_journal(store_path: Path) -> None:
    """Approving, then resuming, changes the waiting run's mark and no other's."""
    store = SQLiteStore(store_path)
    before = data.index_marks(store)
    assert before["run-wait"] == (8, "waiting")
    approve(store_path)
    after = data.index_marks(store)
    assert data.changed_runs(before, after) == ["run-wait"]
    assert resume(store_path).value == "completed"
    assert data.index_marks(store)["run-wait"][1] == "completed"


def test_a_campaign_folder_is_read_with_its_charts(campaign_dir: Path) -> None:
    """results.json becomes the summary table; the report's headline and charts come along."""
    campaign = data.load_campaign(campaign_dir)
    assert campaign.report == campaign_dir / "report.html"
    summary = data.campaign_data(campaign)
    assert summary["episodes"] == sum(c["episodes"] for c in summary["cells"]) > 0
    assert {c["harness"] for c in summary["cells"]} == set(summary["harnesses"])
    assert summary["charts_html"].count("<svg") >= len(summary["suites"])
    assert "Invariant violations" in summary["headline_html"]


def test_what_is_not_a_campaign_is_named(tmp_path: Path) -> None:
    """A missing folder, a file, a folder without results.json and a broken one: each named."""
    with pytest.raises(UsageError, match=r"campaign folder .*nope: .*found missing"):
        data.load_campaign(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="found a file"):
        data.load_campaign(tmp_path / "file")
    with pytest.raises(UsageError, match=r"is not a campaign folder: expected results\.json"):
        data.load_campaign(tmp_path)
    (tmp_path / "results.json").write_text('{"campaign": {"name": 3}, "cells": []}')
    with pytest.raises(UsageError, match=r"results.json: not a campaign's results \(at campaign"):
        data.load_campaign(tmp_path)
