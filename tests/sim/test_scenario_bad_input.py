"""Scenario files that once crashed or hung `tether sim run` now exit 2 naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.yaml_mutations import SCENARIO_FILES
from tether.cli import app
from tether.errors import UsageError
from tether.runtime.budgets import Budgets
from tether.sim.episode import run_episode
from tether.sim.invariants import EpisodeFacts, check_invariants
from tether.sim.scenario import EFFECTS, Invariant, _Budgets, load_scenario
from tether.sim.world import World

STORY = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / \
    "refund_timeout_after_commit.yaml"
runner = CliRunner()


def sim_run(tmp_path: Path, text: str) -> str:
    """Run a scenario file; it must exit 2 with one line naming the file. Returns the rest."""
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", "3"])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                       SystemExit), \
        repr(result.exception)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith(f"error: {path}: ") and "\n" not in message, message
    return message.removeprefix(f"error: {path}: ")


def story(**changes: str) -> str:
    """The timeout story with top-level sections replaced by YAML text."""
    base = {k: v for k, v in yaml.safe_load(STORY.read_text()).items() if k not in changes}
    return yaml.safe_dump(base, sort_keys=False) + \
        "".join(f"{key}: {value}\n" for key, value in changes.items())


BOMB = "[&a0 [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)) + "]"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"persona": f"{{known_facts: {{lol: {BOMB}}}}}"}, "expands to more than"),
    ({"faults": "[" * 1000 + "]" * 1000}, "nesting depth"),
    ({"faults": "[" * 500 + "]" * 500}, "faults[0][0][0]"),
    ({"faults": f"[{{kind: error, target: 'payments.*', times: {10**400}}}]"},
     "faults[0].times: input should be less than or equal to 1000000"),
    ({"faults": "[{kind: latency, target: 'payments.*', latency_s: .inf}]"},
     "faults[0].latency_s: input should be a finite number"),
    ({"faults": "[{kind: latency, target: 'payments.*', window_s: [5, 1]}]"},
     "faults[0].window_s: expected [low, high] with low <= high"),
    ({"faults": "[{kind: error, target: 'payments.*', on_call: [0]}]"},
     "faults[0].on_call[0]: input should be greater than or equal to 1"),
    ({"faults": "[{kind: wrong_content, target: 'payments.*', replace: {amount: .nan}}]"},
     "faults[0].replace.amount: expected a finite number"),
    ({"budgets": "{max_steps: 1e308}"}, "budgets.max_steps: "),
    ({"budgets": f"{{max_steps: {10**12}}}"}, "budgets.max_steps: input should be less than"),
    ({"budgets": "{max_steps: null}"}, "budgets.max_steps: input should be a valid integer"),
    ({"budgets": "{max_stepz: 3}"}, "budgets.max_stepz: extra inputs are not permitted; "
                                    "expected one of max_steps"),
    ({"invariants": "1.5"}, "invariants: expected a list of one-key mappings, found a number"),
    ({"invariants": "[{python: {function: 'os'}}]"}, "invariants[0].python.function: "),
    ({"persona": "{patience: 99999999999}"}, "persona.patience: input should be less than"),
    ({"world": "{payments: {charges: [{id: ch_1, customer: cus_x, amount: 5}]}}"},
     "world.payments: payments seed: charge ch_1 names customer 'cus_x'"),
    ({"world": "{payments: {charges: [{id: ch_1, amount: 1e400}]}}"},
     "world.payments.charges[0].amount: "),
    ({"world": "{calendar: {events: [{title: t, attendees: [], start: 1.0e+300, end: 1.0e+301}]}}"},
     "world.calendar.events[0].start: expected a finite number within"),
    ({"world": "{paymnts: {}}"}, "world.'paymnts': unknown service; expected one of calendar"),
    ({"world": "{kb: {documents: [{id: d, title: t, body: b, version: 0}]}}"},
     "world.kb.documents[0].version: input should be greater than or equal to 1"),
    ({"world": "{crm: {customers: [{id: c, name: n, email: e, notes: [{txt: 1}]}]}}"},
     "world.crm.customers[0].notes[0].text: field required (the key is missing)"),
    ({"name": "'[red]x[/red]'\nname: again"}, "line "),
])
def test_bad_scenarios_exit_2_with_key_path(tmp_path: Path, changes: dict[str, str],
                                            expected: str) -> None:
    """Alias bombs, deep nesting, huge and infinite numbers, wrong types at any depth and bad
    seeded worlds are refused at load: exit 2, file, key path, expected and found."""
    assert expected in sim_run(tmp_path, story(**changes))


def test_every_budget_has_a_bounded_spec() -> None:
    """The scenario's budget spec names exactly the runtime's Budgets fields."""
    assert set(_Budgets.model_fields) == {f.name for f in dataclasses.fields(Budgets)}


def test_a_valid_scenario_still_runs(tmp_path: Path) -> None:
    """The bounds leave real scenarios alone: the story loads and runs (exit 0)."""
    path = tmp_path / "scenario.yaml"
    path.write_text(story(budgets="{max_steps: 1000, max_tokens: 1000000}"))
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", "3"])
    assert result.exit_code == 0, result.output


def raises(facts: object) -> str | None:
    """An invariant function with a bug."""
    raise KeyError("refunds")


def answers_a_number(facts: object) -> object:
    """An invariant function that returns neither None nor a message."""
    return 5


def exits(facts: object) -> str | None:
    """An invariant function that exits the process."""
    raise SystemExit(0)


def interrupts(facts: object) -> str | None:
    """An invariant function that raises a BaseException other than SystemExit."""
    raise KeyboardInterrupt


@pytest.mark.parametrize(("function", "expected"), [
    (f"{__name__}:raises", "raised KeyError: 'refunds'; it must return None"),
    ("sys:exit", "'sys:exit' raised SystemExit"),
    (f"{__name__}:exits", "exits' raised SystemExit: 0"),
    (f"{__name__}:interrupts", "interrupts' raised KeyboardInterrupt"),
    (f"{__name__}:answers_a_number", "returned int; expected None (holds) or a message"),
    ("os:sep", "'os:sep' is not a function"),
    ("no_such_module_xyz:check", "cannot be loaded"),
])
def test_a_python_invariant_that_cannot_judge_is_an_error(tmp_path: Path, function: str,
                                                          expected: str) -> None:
    """A user's invariant function that fails, answers nonsense or is missing leaves the
    episode unjudged: exit 2 with the function's name, never a traceback, pass or violation."""
    path = tmp_path / "scenario.yaml"
    path.write_text(story(invariants=f"[{{python: {{function: '{function}'}}}}]"))
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", "3"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: invariant function") and expected in \
        result.output, result.output


@pytest.mark.parametrize(("section", "expected"), [
    ("invariants: [{never: {effect: payments.refnd}}]",
     "invariants[0].never.effect: unknown effect 'payments.refnd'; expected one of "),
    ("invariants: [{never: {effect: payments.refund, match: {chargee: ch_0099}}}]",
     "invariants[0].never.match.chargee: payments.refund effects carry no field 'chargee'; "
     "expected one of amount, charge"),
    ("success: [{every: {effect: payments.refund, match: {amout: 4999}}}]",
     "success[0].every.match.amout: payments.refund effects carry no field 'amout'"),
    ("success: [{exactly_once: {effect: payments.refund, match: {amount: '4999'}}}]",
     "success[0].exactly_once.match.amount: expected an integer (the type of payments.refund's "
     "amount), found a string '4999'"),
    ("invariants: [{at_most: {effect: emails, n: 1}}]",
     "invariants[0].at_most.effect: unknown effect 'emails'"),
])
def test_an_invariant_on_an_effect_the_world_cannot_produce_exits_2(
        tmp_path: Path, section: str, expected: str) -> None:
    """An invariant or success check naming an unknown effect, a field the effect does not
    carry or a value of another type would hold (or never match) vacuously: it exits 2."""
    base = {k: v for k, v in yaml.safe_load(STORY.read_text()).items()
            if k not in ("invariants", "success")}
    text = yaml.safe_dump(base, sort_keys=False) + section + "\n"
    assert expected in sim_run(tmp_path, text)


def test_a_whole_service_and_its_fields_are_accepted(tmp_path: Path) -> None:
    """A bare service name (every operation of it) and real fields still load and run."""
    path = tmp_path / "scenario.yaml"
    path.write_text(story(invariants="[{at_most: {effect: email, n: 1}}, "
                                     "{never: {effect: payments, match: {amount: 1}}}]"))
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", "3"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("scenario", SCENARIO_FILES, ids=lambda p: p.stem)
def test_every_effect_recorded_is_in_the_registry(scenario: Path) -> None:
    """The effects episodes really record (names, fields, value types) are the ones EFFECTS
    lists, so the load-time check refuses only what can never match."""
    loaded = load_scenario(scenario)
    for harness in ("naive", "default"):
        for effect in run_episode(loaded, 1, harness).ledger:
            name = f"{effect['service']}.{effect['operation']}"
            assert name in EFFECTS, name
            for key, value in effect["data"].items():
                assert key in EFFECTS[name], (name, key)
                assert isinstance(value, EFFECTS[name][key]), (name, key, value)


def test_a_check_built_in_code_on_an_unknown_effect_is_an_error() -> None:
    """An invariant built in code (not loaded from a file) that names an effect or field no
    service records raises UsageError when checked, instead of holding vacuously."""
    facts = EpisodeFacts(ledger=World(seed=0).ledger, snapshots={})
    for settings in ({"effect": "payments.refnd"},
                     {"effect": "payments.refund", "match": {"chargee": "ch_1"}}):
        with pytest.raises(UsageError, match="invariant: never"):
            check_invariants([Invariant(kind="never", settings=settings)], facts)
