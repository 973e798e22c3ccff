"""A suite that applies at some seeds of a scenario and not at others was applied: only a
suite no seed of a scenario could take is reported as not applied (and fails the CLI gate)."""

from __future__ import annotations

from pathlib import Path

from tether.evals.aggregate import aggregate
from tether.evals.campaign import plan, read_records, run_campaign
from tether.evals.results import CampaignInfo

HERE = Path(__file__).resolve().parent


def _info(seeds: int) -> CampaignInfo:
    return CampaignInfo(scenarios=["late-order"], suites=["retry_safety"], harnesses=["default"],
                        seeds=seeds, episodes=seeds)


def test_a_suite_applied_at_some_seeds_is_applied(tmp_path: Path) -> None:
    """Records of seeds where the agent wrote nothing are inconclusive; the suite is not
    listed as not applied because other seeds ran it."""
    from tests.evals.test_suite_seeded_twin import BASE  # an agent writing on odd seeds only

    scenario = tmp_path / "s.yaml"
    import yaml

    data = BASE.model_dump(exclude={"source", "invariants", "success"})
    data["agent"] = "tests.evals.test_suite_seeded_twin:odd_seeds_write"
    data["invariants"] = [{i.kind: i.settings} for i in BASE.invariants]
    data["success"] = [{c.kind: c.settings} for c in BASE.success]
    scenario.write_text(yaml.safe_dump(data))
    out = tmp_path / "e.jsonl"
    run_campaign(plan([scenario], ["retry_safety"], ["default"], seeds=4), out, workers=1)
    records = list(read_records(out))
    assert sorted(bool(r["not_applicable"]) for r in records) == [False, False, True, True]
    results = aggregate(records, _info(4))
    assert results.not_applied == {}
    (cell,) = results.cells
    assert cell.not_applied == 2 and cell.inconclusive >= 2
