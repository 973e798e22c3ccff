"""Campaigns run in parallel, stream, resume; failures shrink; `tether demo` tells the story."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tether.cli import app
from tether.evals.campaign import plan, read_records, run_campaign
from tether.evals.results import CampaignResults
from tether.evals.shrink import shrink, write_reproduction
from tether.evals.suites import BUILTIN_SCENARIOS
from tether.sim.episode import run_episode
from tether.sim.scenario import load_scenario, scenario_from_dict

REFUND = next(p for p in BUILTIN_SCENARIOS if p.stem == "refund")


def test_a_campaign_streams_records_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    """Interrupted after some episodes, a rerun only runs the rest; records are complete."""
    jobs = plan([REFUND], ["retry_safety"], ["naive", "default"], seeds=6)
    out = tmp_path / "episodes.jsonl"
    assert run_campaign(jobs[:5], out, workers=1) == 5
    with out.open("a") as sink:
        sink.write('{"key": "torn')  # an interrupted write
    seen: list[tuple[int, int]] = []
    ran = run_campaign(jobs, out, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert ran == len(jobs) - 5
    records = list(read_records(out))
    assert sorted(r["key"] for r in records) == sorted(j.key for j in jobs)
    assert seen[0] == (5, 12) and seen[-1] == (12, 12)
    assert run_campaign(jobs, out, workers=2) == 0


def test_parallel_and_serial_campaigns_agree(tmp_path: Path) -> None:
    """Two processes or one: the same records, episode for episode."""
    jobs = plan([REFUND], ["crash_recovery"], ["naive"], seeds=4)
    run_campaign(jobs, tmp_path / "a.jsonl", workers=1)
    run_campaign(jobs, tmp_path / "b.jsonl", workers=2)

    def digests(name: str) -> dict[str, tuple[str, str]]:
        return {r["key"]: (r["journal_digest"], r["ledger_digest"])
                for r in read_records(tmp_path / name)}

    assert digests("a.jsonl") == digests("b.jsonl")


def test_shrinking_finds_the_one_essential_fault(tmp_path: Path) -> None:
    """Four faults, one of which causes the duplicate refund: shrinking keeps only it."""
    base = load_scenario(REFUND).model_dump(exclude={"source", "invariants"})
    scenario = scenario_from_dict({**base, "faults": [
        {"kind": "latency", "target": "*", "latency_s": 1.0},
        {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]},
        {"kind": "rate_limit", "target": "model.complete", "on_call": [2], "retry_after_s": 2},
        {"kind": "schema_drift", "target": "kb.search", "retype": ["version"]},
    ], "invariants": [{"exactly_once": {"effect": "payments.refund"}}]})
    assert not run_episode(scenario, 0, "naive").ok
    shrunk = shrink(scenario, 0, "naive")
    assert shrunk.faults == ["timeout_after@payments.create_refund"]
    path, command = write_reproduction(shrunk, tmp_path)
    assert command == f"tether sim run {path} --seed 0 --harness naive"
    again = load_scenario(path)
    assert not run_episode(again, 0, "naive").ok and len(again.faults) == 1


def test_demo_default_is_clean_and_naive_is_caught(tmp_path: Path) -> None:
    """The main job, small: tether has no violation on any suite; naive has some on retry
    safety and crash recovery; results.json, report.html and replay files are written."""
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--seeds", "8",
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    results = CampaignResults.model_validate_json((tmp_path / "results.json").read_text())
    cells = {(c.harness, c.suite): c for c in results.cells}
    assert len(cells) == 10 and results.campaign.episodes == 2 * 5 * 2 * 8
    assert all(cells[("default", s)].violations == 0 for s in results.campaign.suites)
    assert cells[("naive", "retry_safety")].violations > 0
    assert cells[("naive", "crash_recovery")].violations > 0
    assert "retry_safety: invariant violations" in result.output
    by_fault = {(f.harness, f.fault): f for f in results.by_fault}
    assert by_fault[("default", "timeout_after")].duplicate_rate == 0.0
    assert by_fault[("naive", "timeout_after")].duplicate_rate > 0.0
    assert "By fault type" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    for case in results.failures:
        assert case.replay.startswith("tether sim run ") and Path(case.replay.split()[3]).exists()
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 160 and json.loads(lines[0])["verdict"]


def test_eval_run_is_a_ci_gate(tmp_path: Path) -> None:
    """Exit 0 when tether holds; 2 on a bad suite; 0 against itself as the baseline."""
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "run", "--suite", "retry_safety", "--seeds", "4",
                                "--workers", "1", "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    bad = runner.invoke(app, ["eval", "run", "--suite", "nope", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "unknown suite(s) nope" in bad.output
    again = runner.invoke(app, ["eval", "run", "--suite", "retry_safety", "--seeds", "4",
                                "--workers", "1", "--out", str(tmp_path / "c"), "--baseline",
                                str(tmp_path / "a" / "results.json")])
    assert again.exit_code == 0, again.output
