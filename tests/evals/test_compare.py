"""Comparing two campaigns: verdicts, the rich table, and `tether sim compare`'s exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.evals.sample_results import cell, sample_results
from tether.cli import app
from tether.errors import UsageError
from tether.evals.compare import (
    compare,
    compare_harnesses,
    gate_failures,
    load_results,
    render_comparison,
    unmatched,
    verdict,
)
from tether.evals.results import CampaignResults, Cell

runner = CliRunner()


def candidate() -> CampaignResults:
    """The sample campaign after a change: naive/faults improved, default/faults regressed."""
    results = sample_results()
    results.cells = [
        cell("naive", "baseline", 17, 20),  # 18/20 → 17/20: noise
        cell("default", "baseline", 20, 20),  # 20/20 → 20/20: identical
        cell("naive", "faults", 16, 20, duplicates=1),  # 8/20 → 16/20
        cell("default", "faults", 12, 20, domains={"timeout": 8}),  # 19/20 → 12/20
    ]
    return results


def test_compare_by_hand() -> None:
    """Each common cell gets B − A, the pooled z-test and a verdict, in A's cell order."""
    rows = {(r.harness, r.suite): r for r in compare(sample_results(), candidate())}
    assert list(rows) == [("naive", "baseline"), ("default", "baseline"), ("naive", "faults"),
                          ("default", "faults")]
    # naive/faults 8/20 → 16/20: Δ = +0.4; pooled 24/40 = 0.6; var = 0.6·0.4·(1/20 + 1/20)
    # = 0.024; z = 0.4 / 0.154919 = 2.581989; p = erfc(2.581989 / √2) = 0.009823 → better.
    better = rows[("naive", "faults")]
    assert better.difference == pytest.approx(0.4) and better.z == pytest.approx(2.581989)
    assert better.p_value == pytest.approx(0.009823, abs=1e-6) and better.verdict == "better"
    # Duplicate episodes 6/20 → 1/20: the rate change is 0.05 − 0.30 = −0.25.
    assert better.duplicate_change == pytest.approx(-0.25)
    # default/faults 19/20 → 12/20: Δ = −0.35; pooled 31/40 = 0.775; var = 0.775·0.225·0.1
    # = 0.0174375; z = −0.35 / 0.132051 = −2.650489; p = 0.008038 → worse.
    worse = rows[("default", "faults")]
    assert worse.z == pytest.approx(-2.650489) and worse.p_value == pytest.approx(0.008038,
                                                                                   abs=1e-6)
    assert worse.verdict == "worse" and worse.pass_rate_b == pytest.approx(0.6)
    # naive/baseline 18/20 → 17/20: z = −0.478, p = 0.633 → same; 20/20 both: p = 1 → same.
    assert rows[("naive", "baseline")].verdict == "same"
    assert rows[("default", "baseline")].p_value == 1.0
    assert rows[("default", "baseline")].verdict == "same"


def test_verdict_needs_significance_and_size() -> None:
    """better/worse need p < 0.05 and |Δ| ≥ 0.02 (a float-rounded 2 points included)."""
    assert verdict(0.02, 0.049) == "better"
    assert verdict(0.30 - 0.28, 0.01) == "better"  # 0.019999999999999962 is two points
    assert verdict(-0.5, 0.05) == "same"  # p must be below 0.05, not equal
    assert verdict(-0.019, 0.0001) == "same"


def test_large_samples_small_effect_is_same() -> None:
    """5000/10000 → 5150/10000 is significant (p = 0.034) but 1.5 points: same."""
    # pooled 0.5075; var = 0.5075·0.4925·(2/10000) = 4.99875e-5; z = 0.015 / 0.00707 = 2.1216
    a, b = sample_results(), sample_results()
    a.cells, b.cells = [cell("x", "s", 5000, 10000)], [cell("x", "s", 5150, 10000)]
    [row] = compare(a, b)
    assert row.p_value == pytest.approx(0.033875, abs=1e-6) and row.verdict == "same"


def test_only_common_cells_are_compared() -> None:
    """Cells in one campaign only are left out of compare and listed by unmatched."""
    a, b = sample_results(), candidate()
    a.cells.append(cell("retrying", "faults", 5, 20))
    b.cells.append(cell("naive", "chaos", 5, 20))
    assert len(compare(a, b)) == 4
    assert unmatched(a, b) == (["retrying/faults"], ["naive/chaos"])


def test_render_comparison_table() -> None:
    """The table shows both rates with counts, Δ in points, p, and a verdict count."""
    console = Console(record=True, width=120, color_system=None)
    render_comparison(compare(sample_results(), candidate()), console)
    text = console.export_text()
    assert "40.0% (8/20)" in text and "80.0% (16/20)" in text and "+40.0 pp" in text
    assert "-35.0 pp" in text and "0.010" in text and "-25.0 pp" in text
    assert "1 worse, 1 better, 2 same" in text


def _write(tmp_path: Path, name: str, results: CampaignResults) -> str:
    path = tmp_path / name
    path.write_text(results.model_dump_json(indent=2))
    return str(path)


def test_cli_exit_codes(tmp_path: Path) -> None:
    """Exit 1 when any cell got worse, 0 when none did."""
    a = _write(tmp_path, "a.json", sample_results())
    b = _write(tmp_path, "b.json", candidate())
    regressed = runner.invoke(app, ["sim", "compare", a, b])
    assert regressed.exit_code == 1, regressed.output
    assert "worse" in regressed.output and "1 worse, 1 better, 2 same" in regressed.output
    unchanged = runner.invoke(app, ["sim", "compare", a, a])
    assert unchanged.exit_code == 0 and "0 worse, 0 better, 4 same" in unchanged.output


def test_cli_json(tmp_path: Path) -> None:
    """--json prints every comparison and whether there was a regression."""
    a = _write(tmp_path, "a.json", sample_results())
    b = _write(tmp_path, "b.json", candidate())
    result = runner.invoke(app, ["sim", "compare", a, b, "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["regression"] is True and data["only_in_a"] == data["only_in_b"] == []
    assert [row["verdict"] for row in data["comparisons"]] == ["same", "same", "better", "worse"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read {path}: No such file or directory"),
    ("{not json", "{path} is not valid JSON"),
    ('{"cells": []}', "{path} is not a campaign results file: campaign: Field required"),
])
def test_cli_bad_input_exits_2_naming_the_file(tmp_path: Path, content: str | None,
                                               message: str) -> None:
    """A missing, non-JSON or wrongly shaped file exits 2 with a message naming that file."""
    good = _write(tmp_path, "good.json", sample_results())
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    result = runner.invoke(app, ["sim", "compare", good, str(bad)])
    assert result.exit_code == 2
    assert message.format(path=bad) in result.output


def test_cli_no_common_cells_is_bad_input(tmp_path: Path) -> None:
    """Two campaigns with no (harness, suite) in common cannot be compared: exit 2."""
    other = sample_results()
    other.cells = [cell("x", "y", 1, 2)]
    a = _write(tmp_path, "a.json", sample_results())
    b = _write(tmp_path, "b.json", other)
    result = runner.invoke(app, ["sim", "compare", a, b])
    assert result.exit_code == 2 and "no (harness, suite) cell in common" in result.output


def test_load_results_round_trips(tmp_path: Path) -> None:
    """load_results reads back what the campaign wrote, and raises UsageError otherwise."""
    path = Path(_write(tmp_path, "a.json", sample_results()))
    assert load_results(path) == sample_results()
    with pytest.raises(UsageError, match="cannot read"):
        load_results(tmp_path / "missing.json")


def _inconclusive(harness: str, suite: str, episodes: int) -> Cell:
    """A cell none of whose episodes met its suite's faults."""
    empty = cell(harness, suite, 0, episodes)
    return empty.model_copy(update={"inconclusive": episodes, "violations": 0,
                                    "pass_rate": None, "interval": None, "pass_k": {},
                                    "verdicts": {"inconclusive": episodes}})


def test_a_side_with_no_conclusive_episode_is_inconclusive_not_same() -> None:
    """30/30 against 0 conclusive (either way round) is inconclusive, with no rate or p-value."""
    a, b = sample_results(), sample_results()
    b.cells[3] = _inconclusive("default", "faults", 20)
    a.cells[0] = _inconclusive("naive", "baseline", 20)
    rows = {(r.harness, r.suite): r for r in compare(a, b)}
    lost, new = rows[("default", "faults")], rows[("naive", "baseline")]
    assert lost.verdict == new.verdict == "inconclusive"
    assert lost.pass_rate_b is None and lost.pass_rate_a == pytest.approx(19 / 20)
    assert new.pass_rate_a is None and lost.p_value is None and lost.difference is None
    assert (lost.inconclusive_b, lost.episodes_b) == (20, 0)
    # The gate fails where the candidate lost its evidence, not where the baseline had none.
    assert gate_failures(list(rows.values())) == [lost]
    assert lost.as_data()["verdict"] == "inconclusive" and lost.as_data()["pass_rate_b"] is None


def test_harness_comparison_with_an_inconclusive_side_is_inconclusive() -> None:
    """compare_harnesses does not call 30 passes against 30 inconclusive episodes 'same'."""
    results = sample_results()
    results.cells[3] = _inconclusive("default", "faults", 20)
    [_, faults] = compare_harnesses(results, "naive", "default")
    assert faults.verdict == "inconclusive" and faults.harness == "naive → default"


def test_render_says_inconclusive() -> None:
    """The table shows an inconclusive side as such and counts inconclusive rows."""
    a, b = sample_results(), sample_results()
    b.cells[3] = _inconclusive("default", "faults", 20)
    console = Console(record=True, width=140, color_system=None)
    render_comparison(compare(a, b), console)
    text = console.export_text()
    row = next(line for line in text.splitlines() if "faults" in line and "default" in line)
    assert "inconclusive" in row and "20 inconclusive" in row and "0.0%" not in row
    assert "0 worse, 0 better, 3 same, 1 inconclusive" in text


def test_cli_gate_fails_when_the_candidate_became_inconclusive(tmp_path: Path) -> None:
    """sim compare exits 1 when a cell conclusive in A has no conclusive episode in B."""
    b_results = sample_results()
    b_results.cells[3] = _inconclusive("default", "faults", 20)
    a = _write(tmp_path, "a.json", sample_results())
    b = _write(tmp_path, "b.json", b_results)
    result = runner.invoke(app, ["sim", "compare", a, b])
    assert result.exit_code == 1, result.output
    assert "inconclusive" in result.output
