"""A fault that never fired is not a pass: inconclusive episodes, cells and suites."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from rich.console import Console

import tether
import tether.errors
from tests.evals.sample_results import sample_results
from tether.evals import campaign
from tether.evals.aggregate import aggregate
from tether.evals.campaign import Job, read_records, run_job
from tether.evals.compare import compare, load_results
from tether.evals.grading import grade
from tether.evals.html import render_html
from tether.evals.report import print_report
from tether.evals.results import CampaignInfo, CampaignResults
from tether.evals.run import run_full_campaign
from tether.evals.stats import pass_hat_k, wilson_interval
from tether.evals.suites import SUITES
from tether.evals.suites import variant as shipped_variant
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.sim.environment import Environment
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict

# -- a hand-written agent: its tools reach the CRM and nothing else ---------------------------


class CustomerArgs(BaseModel):
    customer_id: str


class NoteArgs(BaseModel):
    customer_id: str
    text: str


def _script(request: ModelRequest) -> ModelResponse:
    done = {m.name for m in request.messages if m.role == "tool"}
    if "lookup_customer" not in done:
        return call("lookup_customer", {"customer_id": "cus_1"})
    if "leave_note" not in done:
        return call("leave_note", {"customer_id": "cus_1", "text": "Called back about the order."})
    return reply("I noted the call on cus_1.")


def desk_agent(env: Environment) -> tether.Agent:
    """A support desk agent written against the public API: a CRM lookup and a CRM note."""
    crm = env.client("crm")

    @tether.tool(result=dict[str, Any])
    async def lookup_customer(ctx: tether.ToolContext, args: CustomerArgs) -> Any:
        """The customer's CRM record."""
        return await crm.get_customer(args.customer_id)

    @tether.tool(effect="unsafe", result=dict[str, Any])
    async def leave_note(ctx: tether.ToolContext, args: NoteArgs) -> Any:
        """Leave a note on the customer's record."""
        return await crm.add_note(args.customer_id, args.text)

    return tether.Agent(name="desk", model=ScriptedModel(_script, name="desk-model"),
                        tools=[lookup_customer, leave_note],
                        instructions="Note calls on the customer's CRM record.")


AGENT = f"{__name__}:desk_agent"
DESK: dict[str, Any] = {
    "name": "desk", "agent": AGENT, "task": "Please note that we called cus_1 back.",
    "principal": {"id": "ada@example.com", "roles": ["employee"]},
    "world": {"crm": {"customers": [{"id": "cus_1", "name": "Ada Lovelace",
                                     "email": "ada@example.com"}]}},
    "budgets": {"max_steps": 10},
    "success": [{"exactly_once": {"effect": "crm.note", "match": {"target": "cus_1"}}}],
}

# -- suites defined here, so the test does not depend on which faults the shipped ones pick ----

#: Suite → the faults it adds. ``stray`` targets a service the desk agent never calls;
#: ``sometimes`` slows the agent's own lookup in about half the seeds.
EXTRA_FAULTS: dict[str, list[dict[str, Any]]] = {
    "stray": [{"kind": "timeout_after", "target": "payments.create_refund"},
              {"kind": "error", "target": "email.send", "name": "mail-down"}],
    "sometimes": [{"kind": "latency", "target": "crm.get_customer", "latency_s": 3.0,
                   "probability": 0.5}],
}


def _not_applicable_error() -> type[Exception]:
    found = getattr(tether.errors, "SuiteNotApplicable", None)
    if found is not None:
        return found  # type: ignore[no-any-return]

    class SuiteNotApplicable(tether.errors.UsageError):
        pass

    return SuiteNotApplicable


NOT_APPLICABLE = _not_applicable_error()
REASON = "unreachable: the agent made no write the suite could fault"


def _variant(real: Callable[..., Scenario]) -> Callable[..., Scenario]:
    def variant(base: Scenario, suite: str, seed: int, agent: str | None = None) -> Scenario:
        if suite == "never_applies":
            raise NOT_APPLICABLE(REASON)
        if suite not in EXTRA_FAULTS:
            return real(base, suite, seed, agent=agent)
        data = base.model_dump(exclude={"source", "invariants", "success"})
        return scenario_from_dict({
            **data, "name": f"{base.name}/{suite}",
            "faults": [*data["faults"], *EXTRA_FAULTS[suite]],
            "invariants": [{i.kind: i.settings} for i in base.invariants],
            "success": [{c.kind: c.settings} for c in base.success]},
            where=f"{base.source}#{suite}")
    return variant


@pytest.fixture(autouse=True)
def _suites(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*EXTRA_FAULTS, "never_applies"):
        monkeypatch.setitem(SUITES, name, SUITES[next(iter(SUITES))])
    monkeypatch.setattr(campaign, "variant", _variant(shipped_variant))


def _write(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(yaml.safe_dump({**DESK, **changes}, sort_keys=False), encoding="utf-8")
    return path


def _run(tmp_path: Path, suites: list[str], seeds: int, **changes: Any) -> CampaignResults:
    return run_full_campaign(tmp_path / "out", scenarios=[_write(tmp_path, **changes)],
                             suites=suites, harnesses=["default"], seeds=seeds, workers=1,
                             shrink_failures=0)


def _terminal(results: CampaignResults) -> str:
    sink = io.StringIO()
    print_report(results, Console(file=sink, width=110, highlight=False, emoji=False))
    return sink.getvalue()


# -- tests ------------------------------------------------------------------------------------


def test_the_desk_agent_passes_when_nothing_is_faulted(tmp_path: Path) -> None:
    """The agent does its task without faults: what follows is about the faults alone."""
    result = run_episode(load_scenario(_write(tmp_path)), 0, "default")
    assert result.ok and grade(load_scenario(_write(tmp_path)), result).verdict == "pass"


def test_faults_on_services_the_agent_never_calls_make_every_episode_inconclusive(
        tmp_path: Path) -> None:
    """The record names the suite's faults, none fired, not reached: inconclusive, not pass."""
    job = Job(str(_write(tmp_path)), "stray", "default", 3)
    record = run_job(job)
    assert record["suite_faults"] == ["timeout_after@payments.create_refund", "mail-down"]
    assert record["suite_fired"] == [] and record["reached"] is False
    assert record["verdict"] == "inconclusive" and record["domain"] == ""
    assert record["ok"] and record["task_success"]  # it did its task: still not a pass
    assert record["not_applicable"] == ""


def test_an_all_inconclusive_cell_is_inconclusive_in_json_terminal_and_html(
        tmp_path: Path) -> None:
    """No pass rate (null, not 100 %) in results.json; 'inconclusive' in the table and page."""
    results = _run(tmp_path, ["stray"], seeds=3)
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    (cell,) = data["cells"]
    assert cell["episodes"] == 3 and cell["inconclusive"] == 3 and cell["passed"] == 0
    assert cell["pass_rate"] is None and cell["interval"] is None and cell["pass_k"] == {}
    assert cell["verdicts"] == {"inconclusive": 3}
    terminal = _terminal(results)
    row = next(line for line in terminal.splitlines() if line.lstrip().startswith("stray"))
    assert "inconclusive" in row and "3/3" in row and "%" not in row
    page = (tmp_path / "out" / "report.html").read_text()
    table_row = re.search(r'<tr class="inconclusive"><td>default</td><td>stray</td>.*?</tr>',
                          page)
    assert table_row is not None and "inconclusive</b>" in table_row.group(0)
    assert "100.0%" not in table_row.group(0)
    chart = re.search(r'<svg[^>]*aria-label="pass rate by harness on suite stray".*?</svg>',
                      page)
    assert chart is not None and ">inconclusive</text>" in chart.group(0)
    assert '<rect class="h0"' not in chart.group(0)  # no bar, not even one of height 0


def test_a_partly_reached_cell_rates_only_the_episodes_the_faults_reached(
        tmp_path: Path) -> None:
    """Rates, intervals and pass^k are over reached episodes, the rest counted beside them."""
    results = _run(tmp_path, ["sometimes"], seeds=8)
    records = list(read_records(tmp_path / "out" / "episodes.jsonl"))
    reached = [r for r in records if r["reached"]]
    assert 0 < len(reached) < len(records)  # the fault fired in some seeds only
    assert all(r["suite_fired"] == ["latency@crm.get_customer"] for r in reached)
    assert all(r["verdict"] == "inconclusive" for r in records if not r["reached"])
    (cell,) = results.cells
    passed = sum(r["verdict"] == "pass" for r in reached)
    assert cell.inconclusive == len(records) - len(reached) and cell.conclusive == len(reached)
    assert cell.pass_rate == passed / len(reached)
    low, high = wilson_interval(passed, len(reached))
    assert cell.interval == (round(low, 6), round(high, 6))
    assert cell.pass_k["1"] == pass_hat_k({"desk": (len(reached), passed)}, 1)
    row = next(line for line in _terminal(results).splitlines()
               if line.lstrip().startswith("sometimes"))
    assert f"{cell.inconclusive}/{cell.episodes}" in row


def test_rates_leave_inconclusive_episodes_out() -> None:
    """2 passes, 1 failure, 5 inconclusive: 2/3, not 2/8; counts and pass^k agree."""
    verdicts = ["pass", "pass", "task_failed"] + ["inconclusive"] * 5
    records = [{"harness": "default", "suite": "s", "scenario": "t", "verdict": v,
                "task_success": v == "pass", "duplicates": 0, "faulted": True, "ok": True,
                "domain": "model" if v == "task_failed" else "", "metrics": {"steps": 2.0},
                "fired": ["latency"]} for v in verdicts]
    info = CampaignInfo(scenarios=["t"], suites=["s"], harnesses=["default"], seeds=8,
                        episodes=8)
    (cell,) = aggregate(records, info).cells
    assert (cell.episodes, cell.inconclusive, cell.conclusive) == (8, 5, 3)
    assert cell.pass_rate == pytest.approx(2 / 3) and cell.task_success == 2
    assert cell.recovery_rate == pytest.approx(2 / 3)
    assert cell.pass_k["2"] == pytest.approx(1 / 3)  # C(2,2)/C(3,2), over the three
    assert cell.mean_steps == 2.0


def test_a_violation_stays_a_violation_whatever_fired(tmp_path: Path) -> None:
    """An invariant broken in an unreached episode is a violation, in grade() and the record."""
    path = _write(tmp_path, invariants=[{"at_most": {"effect": "crm.note", "n": 0}}])
    scenario = load_scenario(path)
    result = run_episode(scenario, 0, "default")
    assert not result.ok
    assert grade(scenario, result, reached=False).verdict == "violation"
    assert grade(scenario, result).verdict == "violation"
    record = run_job(Job(str(path), "stray", "default", 0))
    assert record["reached"] is False and record["verdict"] == "violation"


def test_grade_alone_is_unchanged_and_unreached_is_inconclusive(tmp_path: Path) -> None:
    """grade() without reached grades as before; reached=False turns a pass inconclusive."""
    scenario = load_scenario(_write(tmp_path))
    result = run_episode(scenario, 0, "default")
    assert grade(scenario, result).verdict == "pass"
    assert grade(scenario, result, reached=False).verdict == "inconclusive"


def test_a_base_job_is_reached_by_definition(tmp_path: Path) -> None:
    """A job outside the suites (the base scenario as written) is conclusive."""
    record = run_job(Job(str(_write(tmp_path)), "base", "default", 0))
    assert record["reached"] is True and record["suite_faults"] == []
    assert record["verdict"] == "pass"


def test_a_suite_label_a_base_fault_shares_does_not_prove_the_suite_fired(
        tmp_path: Path) -> None:
    """The base fault fires under the same label as the suite's: not proof; inconclusive."""
    base_fault = {"kind": "latency", "target": "crm.get_customer", "latency_s": 1.0}
    EXTRA_FAULTS["shadowed"] = [{**base_fault, "latency_s": 2.0, "on_call": [9]}]
    try:
        SUITES["shadowed"] = SUITES["stray"]
        record = run_job(Job(str(_write(tmp_path, faults=[base_fault])), "shadowed",
                             "default", 0))
    finally:
        del EXTRA_FAULTS["shadowed"], SUITES["shadowed"]
    assert record["suite_faults"] == ["latency@crm.get_customer"]
    assert record["suite_fired"] == [] and record["verdict"] == "inconclusive"


def test_a_suite_that_cannot_be_applied_is_reported_not_crashed(tmp_path: Path) -> None:
    """Its jobs are inconclusive with the reason; results.not_applied names it everywhere."""
    results = _run(tmp_path, ["never_applies", "stray"], seeds=2)
    records = [r for r in read_records(tmp_path / "out" / "episodes.jsonl")
               if r["suite"] == "never_applies"]
    assert len(records) == 2 and all(
        r["verdict"] == "inconclusive" and r["reached"] is False and
        r["not_applicable"] == REASON for r in records)
    assert results.not_applied == {"never_applies": REASON}
    cell = next(c for c in results.cells if c.suite == "never_applies")
    assert (cell.inconclusive, cell.not_applied, cell.pass_rate) == (2, 2, None)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["not_applied"] == {"never_applies": REASON}
    assert f"not applied never_applies: {REASON}" in _terminal(results)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Suites not applied" in page and f"<b>never_applies</b>: {REASON}" in page


def test_an_older_results_file_still_loads(tmp_path: Path) -> None:
    """A results.json written before inconclusive existed reads back, every episode
    conclusive, and compares as before."""
    data = sample_results().model_dump(mode="json")
    data.pop("not_applied")
    for cell in data["cells"]:
        del cell["inconclusive"], cell["not_applied"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    old = load_results(path)
    assert old.not_applied == {} and all(c.inconclusive == 0 for c in old.cells)
    assert [c.conclusive for c in old.cells] == [c.episodes for c in old.cells]
    assert all(row.verdict == "same" for row in compare(old, sample_results()))
    assert "inconclusive</b>" not in render_html(old)


def test_an_older_episodes_file_aggregates(tmp_path: Path) -> None:
    """Records written before reached/not_applicable existed aggregate as conclusive."""
    record = {"harness": "naive", "suite": "s", "scenario": "t", "verdict": "pass",
              "task_success": True, "duplicates": 0, "faulted": False, "ok": True,
              "domain": "", "metrics": {}, "fired": []}
    info = CampaignInfo(scenarios=["t"], suites=["s"], harnesses=["naive"], seeds=1,
                        episodes=1)
    results = aggregate([record], info)
    assert results.cells[0].pass_rate == 1.0 and results.not_applied == {}


def test_comparisons_count_only_conclusive_episodes() -> None:
    """Inconclusive episodes added to B are not failures: no false 'worse'."""
    a = sample_results()
    b = sample_results()
    for cell in b.cells:
        cell.episodes += 20
        cell.inconclusive = 20
    rows = compare(a, b)
    assert all(row.verdict == "same" for row in rows)
    assert [r.episodes_b for r in rows] == [c.episodes for c in a.cells]


def test_duplicate_and_per_fault_rates_count_conclusive_episodes_only() -> None:
    """An inconclusive episode's duplicates and fired faults enter no rate: 1 duplicate in 2
    conclusive episodes is 1/2, whatever 4 inconclusive ones did."""
    def record(verdict: str, duplicates: int, fired: list[str]) -> dict[str, Any]:
        return {"harness": "naive", "suite": "s", "scenario": "t", "verdict": verdict,
                "task_success": verdict == "pass", "duplicates": duplicates, "faulted": True,
                "ok": True, "domain": "", "metrics": {"steps": 1.0}, "fired": fired}

    records = [record("pass", 0, ["latency"]), record("unacceptable_process", 1, ["latency"])]
    records += [record("inconclusive", 2, ["timeout_after"])] * 4
    info = CampaignInfo(scenarios=["t"], suites=["s"], harnesses=["naive"], seeds=6,
                        episodes=6)
    results = aggregate(records, info)
    (cell,) = results.cells
    assert cell.duplicate_rate == pytest.approx(1 / 2) and cell.duplicate_effects == 1
    assert [(f.fault, f.episodes, f.duplicate_rate) for f in results.by_fault] == [
        ("latency", 2, pytest.approx(1 / 2))]
