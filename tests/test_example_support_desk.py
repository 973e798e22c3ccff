"""The support-desk example project: a user's agent tested end to end with tether's commands.

Every check runs the commands a user runs, in fresh processes: the project's own pytest suite,
``tether eval run`` over its scenarios (all five suites, naive against default), the replay of a
shrunk naive failure from its repro file, a comparison of two harness variants, and the errors
a mistaken agent gets.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support_desk"
SCENARIOS = EXAMPLE / "scenarios"
SUITES = ("retry_safety", "crash_recovery", "schema_drift", "adversarial_context",
          "latency_variance")


def tether(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``tether ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240, check=False)


def as_command(printed: str) -> list[str]:
    """A printed ``tether …`` command as an argv for this interpreter."""
    words = shlex.split(printed)
    assert words[0] == "tether", printed
    return [sys.executable, "-m", "tether.cli", *words[1:]]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int]]:
    """One campaign over the desk's scenarios: every suite, naive and default, three seeds."""
    out = tmp_path_factory.mktemp("desk-campaign")
    proc = tether("eval", "run", str(SCENARIOS / "late_delivery.yaml"),
                  str(SCENARIOS / "damaged_needs_supervisor.yaml"), "--seeds", "3",
                  "--out", str(out), "--workers", "2")
    yield out, proc.stdout + proc.stderr, proc.returncode


def test_the_example_projects_own_tests_pass() -> None:
    """``python -m pytest examples/support_desk/tests`` passes: the fixture takes the agent."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "examples/support_desk/tests"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout), proc.stdout[-2000:]
    assert "failed" not in proc.stdout.splitlines()[-1]


def test_every_suite_runs_on_the_desk_and_only_naive_breaks_invariants(
        campaign: tuple[Path, str, int]) -> None:
    """All five suites apply to the desk's agent; default breaks nothing, naive breaks some."""
    out, printed, status = campaign
    assert status == 0, printed[-4000:]
    results = json.loads((out / "results.json").read_text())
    cells = results["cells"]
    assert {(c["suite"], c["harness"]) for c in cells} == {
        (s, h) for s in SUITES for h in ("naive", "default")}
    assert [c for c in cells if c["harness"] == "default" and c["violations"]] == []
    assert sum(c["violations"] for c in cells if c["harness"] == "naive") >= 1
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert {r["agent"] for r in records} == {f"{EXAMPLE / 'desk' / 'agent.py'}:build"}
    for suite in SUITES:
        assert suite in printed


def _naive_failure(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A shrunk naive violation whose every fault was essential (so its repro file is the very
    episode the campaign ran), and the campaign's record of that episode."""
    results = json.loads((out / "results.json").read_text())
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    cases = [c for c in results["failures"] if c["harness"] == "naive"
             and c["verdict"] == "violation" and c["faults"]
             and sorted(c["shrunk_faults"]) == sorted(c["faults"])]
    assert cases, results["failures"]
    case = cases[0]
    (record,) = [r for r in records if (r["scenario"], r["suite"], r["harness"], r["seed"]) ==
                 (case["scenario"].split("/")[0], case["suite"], "naive", case["seed"])]
    return case, record


def test_a_shrunk_naive_failure_replays_from_its_repro_file_byte_for_byte(
        campaign: tuple[Path, str, int]) -> None:
    """The repro file of a naive failure names the desk's agent; the printed command and
    ``tether sim replay`` reproduce it in fresh processes with the same digests."""
    out, printed, _ = campaign
    case, record = _naive_failure(out)
    assert case["replay"] in printed
    command = as_command(case["replay"])
    assert command[3:5] == ["sim", "run"], case["replay"]
    repro = Path(command[5])
    assert repro.parent == out / "repro"
    assert yaml.safe_load(repro.read_text())["agent"] == record["agent"]

    ran = subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 1, ran.stdout[-2000:] + ran.stderr[-2000:]
    episode = json.loads(ran.stdout)
    assert episode["agent"] == record["agent"]
    broken = {v["invariant"] for v in episode["verdicts"] if not v["holds"]}
    assert broken & {v["invariant"] for v in record["violations"]}
    # Nothing was shrunk away: it is the campaign's own episode, byte for byte.
    assert (episode["journal_digest"], episode["ledger_digest"]) == \
        (record["journal_digest"], record["ledger_digest"])

    replayed = tether("sim", "replay", *command[5:])
    assert replayed.returncode == 1, replayed.stdout[-2000:] + replayed.stderr[-2000:]
    assert "replay: identical journal and ledger" in replayed.stdout
    assert f"journal {episode['journal_digest'][:16]}  ledger {episode['ledger_digest'][:16]}" \
        in replayed.stdout
    assert "Traceback" not in replayed.stdout + replayed.stderr


def test_two_retry_policy_variants_are_compared_with_their_significance(
        tmp_path: Path) -> None:
    """``--harness patient --harness hasty --harnesses harnesses.yaml`` runs both variants of
    the desk's agent (named with ``--agent``) on the same seeds and faults and prints, per
    suite, the difference with its significance: no retry budget is significantly worse."""
    proc = tether("eval", "run", "scenarios/late_delivery.yaml", "--agent", "desk/agent.py:build",
                  "--suite", "retry_safety", "--suite", "latency_variance",
                  "--harness", "patient", "--harness", "hasty", "--harnesses", "harnesses.yaml",
                  "--seeds", "20", "--out", str(tmp_path), "--workers", "2", cwd=EXAMPLE)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-4000:]
    assert "hasty against patient (same seeds and faults):" in printed
    table = printed.split("hasty against patient", 1)[1]
    for column in ("A pass", "B pass", "Δ", " z ", " p ", "verdict"):
        assert column in table
    assert re.search(r"retry_safety .*\s(<0\.001|0\.0\d\d)\s.*\sworse\s", table), table
    assert re.search(r"latency_var\S* .*\s(same|worse|better)\s", table), table
    assert re.search(r"\d+ worse, \d+ better, \d+ same \(p < 0\.05", table), table
    cells = {(c["suite"], c["harness"]): c
             for c in json.loads((tmp_path / "results.json").read_text())["cells"]}
    assert set(cells) == {(s, h) for s in ("retry_safety", "latency_variance")
                          for h in ("patient", "hasty")}
    assert cells["retry_safety", "patient"]["passed"] > cells["retry_safety", "hasty"]["passed"]


# -- a mistaken agent is told what is wrong (exit 2), never shown a traceback ----------------

NO_SERVICE = '''
from pydantic import BaseModel

import tether


class OrderRef(BaseModel):
    order_id: str


def build(env):
    @tether.tool(name="lookup_order", args=OrderRef, result=dict)
    async def lookup_order(ctx, args):
        return {"id": args.order_id, "amount": 8600}  # a stub: no service is called

    def script(request):
        if any(m.role == "tool" for m in request.messages):
            return tether.ModelResponse(text="done")
        return tether.ModelResponse(tool_calls=(
            tether.ToolCall(id="c1", name="lookup_order", arguments='{"order_id": "ord_2001"}'),))

    return tether.Agent(name="stub", model=tether.ScriptedModel(script), tools=[lookup_order])
'''

WRONG_SIGNATURE = '''
def build(env, clients):
    raise AssertionError("never called")
'''


def _scenario_naming(tmp_path: Path, agent: str) -> Path:
    data = yaml.safe_load((SCENARIOS / "late_delivery.yaml").read_text())
    data["agent"] = agent
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("agent", "source", "message"), [
    ("desk_nowhere.agent:build", None, "agent 'desk_nowhere.agent:build': no module "
                                       "'desk_nowhere"),
    ("wrong.py:build", WRONG_SIGNATURE, "the factory takes (env, clients); it must take "
                                        "exactly one argument, the simulated environment"),
    ("stub.py:build", NO_SERVICE, "its tools (lookup_order) ran but reached no simulated "
                                  "service"),
], ids=["unknown-agent", "wrong-signature", "no-service"])
def test_a_mistaken_agent_exits_2_with_a_clear_message(tmp_path: Path, agent: str,
                                                       source: str | None,
                                                       message: str) -> None:
    """An unknown agent, a factory of the wrong signature, and an agent whose tools reach no
    simulated service each exit 2 naming the problem and the fix, without a traceback."""
    if source is not None:
        (tmp_path / agent.split(":")[0]).write_text(source)
    scenario = _scenario_naming(tmp_path, agent)
    for args in (("sim", "run", str(scenario)),
                 ("eval", "run", str(scenario), "--suite", "retry_safety", "--seeds", "1",
                  "--workers", "1", "--out", str(tmp_path / "out"))):
        proc = tether(*args)
        printed = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode == 2, printed[-3000:]
        assert message in printed, printed[-3000:]
        assert "Traceback" not in printed
