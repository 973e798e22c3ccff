"""Hand-made campaign results shared by the report and comparison tests."""

from __future__ import annotations

from tether.evals.results import CampaignInfo, CampaignResults, Cell, FailureCase, TraceItem
from tether.evals.stats import wilson_interval

REPLAY = "tether sim replay refund.yaml --seed 7 --harness naive --faults timeout_after_commit"


def cell(harness: str, suite: str, passed: int, episodes: int, *, duplicates: int = 0,
         domains: dict[str, int] | None = None) -> Cell:
    """A cell with consistent counts: the rate, its Wilson interval and a pass^k map."""
    low, high = wilson_interval(passed, episodes)
    rate = passed / episodes if episodes else 0.0
    return Cell(
        harness=harness, suite=suite, episodes=episodes, passed=passed,
        violations=episodes - passed, task_success=passed, unacceptable_process=0,
        pass_rate=rate, interval=(round(low, 6), round(high, 6)),
        pass_k={"1": rate, "2": rate * rate, "4": rate ** 4},
        duplicate_effects=duplicates,
        duplicate_rate=duplicates / episodes if episodes else 0.0,
        recovery_rate=None if suite == "baseline" else rate,
        domains=domains or {}, verdicts={"pass": passed, "violation": episodes - passed},
        mean_steps=6.0, mean_model_calls=3.0, mean_tool_calls=2.0, mean_retries=0.5,
        mean_virtual_s=12.5, mean_cost_usd=0.01)


def sample_results(scenario: str = "refund_timeout") -> CampaignResults:
    """Two harnesses on two suites, and one failure with a four-step trace."""
    info = CampaignInfo(name="nightly", scenarios=[scenario, "calendar"],
                        suites=["baseline", "faults"], harnesses=["naive", "default"],
                        seeds=10, episodes=80)
    cells = [
        cell("naive", "baseline", 18, 20),
        cell("default", "baseline", 20, 20),
        cell("naive", "faults", 8, 20, duplicates=6,
             domains={"duplicate_effect": 6, "timeout": 4, "auth": 2}),
        cell("default", "faults", 19, 20, domains={"timeout": 1}),
    ]
    failure = FailureCase(
        scenario=scenario, suite="faults", harness="naive", seed=7, verdict="violation",
        problems=["exactly_once: 2 × refund:ch_0001"], domain="duplicate_effect",
        faults=["timeout_after_commit@payments.refund#1", "latency@crm.lookup#2"],
        shrunk_faults=["timeout_after_commit@payments.refund#1"], replay=REPLAY,
        trace=[TraceItem(at_s=0.0, kind="model", name="chat"),
               TraceItem(at_s=1.5, kind="tool", name="create_refund", detail="timed out",
                         failed=True),
               TraceItem(at_s=3.25, kind="tool", name="create_refund"),
               TraceItem(at_s=4.0, kind="model", name="chat", detail="answered")])
    return CampaignResults(campaign=info, cells=cells, failures=[failure])
