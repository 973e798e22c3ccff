"""Naming the agent under test: short names, modules, files next to the scenario, callables,
the specs repro files carry, and every way a spec can be wrong (a clear error, exit 2)."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import tether
from tests.sim.own_agents import broken, credit
from tether.cli import app
from tether.errors import UsageError
from tether.reference import calendar as calendar_agent
from tether.reference import refund as refund_agent
from tether.sim import load_scenario, run_episode
from tether.sim.agent_ref import agent_spec_of, load_agent_factory, short_names

runner = CliRunner()
AGENT = "tests.sim.own_agents.credit:agent"

#: An agent file as a user writes one next to their scenarios: it imports a sibling module.
AGENT_FILE = '''
import tether
from helpers import CreditArgs, script


def build(env):
    payments = env.client("payments")

    @tether.tool(name="refund_order", args=CreditArgs, effect="idempotent",
                 key=lambda a: f"r:{a.order_ref}:{a.cents}")
    async def refund_order(ctx, args):
        return await payments.create_refund(args.order_ref, amount=args.cents,
                                            idempotency_key=ctx.idempotency_key or None)

    return tether.Agent(name="file_agent", model=script(), tools=[refund_order],
                        instructions="Refund as asked.")
'''

HELPERS_FILE = '''
import json

from pydantic import BaseModel

import tether
from tether.models.scripted import call, reply


class CreditArgs(BaseModel):
    order_ref: str
    cents: int


def script():
    def decide(request):
        if any(m.role == "tool" for m in request.messages):
            return reply("refunded")
        return call("refund_order", json.dumps({"order_ref": "ord_1", "cents": 400}))
    return tether.ScriptedModel(decide)
'''


def _scenario_data(agent: str, amount: int = 700) -> dict[str, Any]:
    return {
        "name": "spec-check",
        "agent": agent,
        "task": "Please credit 700 cents on ord_1.",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 50_000}]}},
        "faults": [{"kind": "timeout_after", "target": "payments.create_refund",
                    "on_call": [1]}],
        "success": [{"exactly_once": {"effect": "payments.refund",
                                      "match": {"charge": "ord_1", "amount": amount}}}],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
    }


def _write_scenario(folder: Path, agent: str, amount: int = 700) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(_scenario_data(agent, amount)))
    return path


def _write_agent_files(folder: Path) -> None:
    (folder / "agents").mkdir(parents=True, exist_ok=True)
    (folder / "agents" / "my_agent.py").write_text(AGENT_FILE)
    (folder / "agents" / "helpers.py").write_text(HELPERS_FILE)


def top_level_factory(env: Any) -> tether.Agent:
    """A factory defined at the top level of this module (for agent_spec_of)."""
    return credit.agent(env)


# -- the spellings -------------------------------------------------------------------------


def test_short_names_are_the_shipped_reference_agents() -> None:
    """`refund` and `calendar` are entry points naming the reference factories."""
    assert short_names()["refund"] == "tether.reference.refund:agent"
    assert load_agent_factory("refund") is refund_agent.agent
    assert load_agent_factory("calendar") is calendar_agent.agent
    assert load_agent_factory("  refund  ") is refund_agent.agent


def test_module_spec_loads_the_named_factory() -> None:
    """`package.module:function` imports the module and returns that function."""
    assert load_agent_factory(AGENT) is credit.agent


def test_file_spec_is_relative_to_the_scenario_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`agents/my_agent.py:build` in a scenario resolves against the scenario's folder, whatever
    the current directory; the result names the file by its absolute path."""
    folder = tmp_path / "project"
    _write_agent_files(folder)
    path = _write_scenario(folder, "agents/my_agent.py:build", amount=400)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_episode(load_scenario(path), 0)
    assert result.agent == f"{(folder / 'agents' / 'my_agent.py').resolve()}:build"
    assert result.ok and all(c.holds for c in result.task_checks), result.verdicts
    assert [c.tool for c in result.calls] == ["refund_order", "refund_order"]


def test_a_callable_agent_is_named_by_module_and_name() -> None:
    """`agent=` a factory runs it, and the result names it as module:function."""
    path_free = run_episode(load_scenario_from(_scenario_data("refund")), 0, agent=credit.agent)
    assert path_free.agent == AGENT
    assert path_free.ok


def load_scenario_from(data: dict[str, Any]) -> Any:
    """A scenario from data (no file)."""
    from tether.sim import scenario_from_dict

    return scenario_from_dict(data)


# -- agent_spec_of -------------------------------------------------------------------------


def test_agent_spec_of_makes_files_absolute(tmp_path: Path) -> None:
    """A file spec becomes absolute (relative to the given folder); module specs and short
    names stay as they are."""
    assert agent_spec_of("agents/a.py:build", tmp_path) == \
        f"{(tmp_path / 'agents' / 'a.py').resolve()}:build"
    assert agent_spec_of(AGENT, tmp_path) == AGENT
    assert agent_spec_of("refund", tmp_path) == "refund"


def test_agent_spec_of_names_callables_by_module_and_qualname() -> None:
    """A top-level function is named module:function, and that spec loads it again."""
    assert agent_spec_of(credit.agent) == AGENT
    spec = agent_spec_of(top_level_factory)
    assert spec == "tests.sim.test_agent_ref:top_level_factory"
    assert load_agent_factory(spec) is top_level_factory


def test_agent_spec_of_names_a_file_loaded_factory_by_its_file(tmp_path: Path) -> None:
    """A factory loaded from a file is named by that file's absolute path, which loads the
    same function again."""
    _write_agent_files(tmp_path)
    factory = load_agent_factory("agents/my_agent.py:build", tmp_path)
    spec = agent_spec_of(factory)
    assert spec == f"{(tmp_path / 'agents' / 'my_agent.py').resolve()}:build"
    assert load_agent_factory(spec) is factory


def test_agent_spec_of_refuses_lambdas_and_nested_functions() -> None:
    """A lambda or a nested function cannot be named in a repro file: a clear UsageError."""

    def nested(env: Any) -> tether.Agent:
        return credit.agent(env)

    for factory in (lambda env: credit.agent(env), nested):
        with pytest.raises(UsageError, match="top level of a module"):
            agent_spec_of(factory)


def test_run_episode_runs_a_lambda_agent_which_only_a_repro_cannot_name() -> None:
    """run_episode runs a lambda agent (the factory itself is an agent= of the Python API);
    only writing it into a repro file is refused, clearly."""
    from tether.evals.shrink import shrink, write_reproduction

    scenario = load_scenario_from(_scenario_data(AGENT))
    result = run_episode(scenario, 0, agent=lambda env: credit.agent(env))
    assert result.ok and "<lambda>" in result.agent
    with pytest.raises(UsageError, match="define it at the top level"):
        shrunk = shrink(scenario, 0, "naive", agent=lambda env: credit.agent(env))
        write_reproduction(shrunk, Path("/nonexistent-never-written"))


# -- signatures ----------------------------------------------------------------------------


def _optional_extra(env: Any, extra: int = 1) -> tether.Agent:
    return credit.agent(env)


def _variadic(*args: Any) -> tether.Agent:
    return credit.agent(args[0])


def _keyword_only(env: Any, *, extra: int) -> tether.Agent:
    return credit.agent(env)


@pytest.mark.parametrize("factory", [_optional_extra, _variadic,
                                     functools.partial(broken.two_args, extra=1)])
def test_factories_callable_with_one_argument_are_accepted(factory: Any) -> None:
    """A factory that can be called with the environment alone is accepted."""
    assert load_agent_factory(factory) is factory


@pytest.mark.parametrize("factory", [broken.zero_args, broken.two_args, _keyword_only])
def test_factories_not_callable_with_one_argument_are_refused(factory: Any) -> None:
    """Zero arguments, two required, or a required keyword-only one: refused, saying what the
    signature must be."""
    with pytest.raises(UsageError, match="exactly one argument"):
        load_agent_factory(factory)


# -- errors, in code and through the CLI ---------------------------------------------------

#: spec → what the error says (besides naming the spec).
BAD_SPECS = [
    ("no_such_agent", "no agent of that short name (known: calendar, refund"),
    ("tests.sim.own_agents.no_such_module:agent", "no module"),
    ("nowhere/missing.py:agent", "no file"),
    ("tests.sim.own_agents.credit:no_such_function", "has no 'no_such_function'"),
    ("tests.sim.own_agents.broken:NOT_CALLABLE", "not a function"),
    ("tests.sim.own_agents.raises_on_import:agent",
     "RuntimeError: the agent module is broken at import"),
    ("tests.sim.own_agents.broken:zero_args", "exactly one argument"),
    ("tests.sim.own_agents.broken:two_args", "exactly one argument"),
    ("tests.sim.own_agents.broken:async_factory", "the factory is async"),
    ("tests.sim.own_agents.broken:not_an_agent", "returned dict; expected a tether.Agent"),
    ("tests.sim.own_agents.broken:offline", "reached no simulated service"),
    ("credit.py", "no agent of that short name"),
    ("tests.sim.own_agents.credit:", "a function name after the colon"),
]


@pytest.mark.parametrize(("spec", "said"), BAD_SPECS)
def test_bad_agent_specs_raise_a_usage_error(spec: str, said: str) -> None:
    """Every wrong spec is a UsageError naming the spec and the cause, from run_episode."""
    with pytest.raises(UsageError) as caught:
        run_episode(load_scenario_from(_scenario_data(spec)), 0)
    assert spec in str(caught.value)
    assert said in str(caught.value)


def _assert_clean_exit_2(result: Any, spec: str, said: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert spec in result.output and said in result.output, result.output


@pytest.mark.parametrize(("spec", "said"), BAD_SPECS)
def test_bad_scenario_agent_exits_2_through_the_cli(tmp_path: Path, spec: str,
                                                   said: str) -> None:
    """`tether sim run` on a scenario naming a bad agent exits 2 with the message, no
    traceback."""
    path = _write_scenario(tmp_path, spec)
    _assert_clean_exit_2(runner.invoke(app, ["sim", "run", str(path)]), spec, said)


@pytest.mark.parametrize(("spec", "said"), BAD_SPECS)
def test_bad_agent_option_exits_2_through_the_cli(tmp_path: Path, spec: str, said: str) -> None:
    """`--agent` naming a bad agent (over a good scenario) exits 2 with the message."""
    path = _write_scenario(tmp_path, AGENT)
    for command in ("run", "replay"):
        _assert_clean_exit_2(runner.invoke(app, ["sim", command, str(path), "--agent", spec]),
                             spec, said)


def test_an_agent_file_that_raises_on_import_exits_2(tmp_path: Path) -> None:
    """A scenario's agent file whose import raises exits 2 naming the spec and the error, and
    the failed module is not kept: fixed, the file loads."""
    (tmp_path / "buggy.py").write_text("raise ValueError('bad config')\n")
    path = _write_scenario(tmp_path, "buggy.py:agent")
    _assert_clean_exit_2(runner.invoke(app, ["sim", "run", str(path)]), "buggy.py:agent",
                         "ValueError: bad config")
    (tmp_path / "buggy.py").write_text(
        "from tests.sim.own_agents.credit import agent\n")
    assert load_agent_factory("buggy.py:agent", tmp_path) is credit.agent


# -- --agent on the CLI --------------------------------------------------------------------


def test_agent_option_overrides_the_scenarios_agent_on_run_and_replay(tmp_path: Path) -> None:
    """`--agent` runs the named agent instead of the scenario's (which alone would exit 2)."""
    path = _write_scenario(tmp_path, "tests.sim.own_agents.broken:offline")
    assert runner.invoke(app, ["sim", "run", str(path)]).exit_code == 2
    ran = runner.invoke(app, ["sim", "run", str(path), "--agent", AGENT])
    assert ran.exit_code == 0, ran.output
    assert ran.output.startswith("PASS") and f"agent: {AGENT}" in ran.output
    replayed = runner.invoke(app, ["sim", "replay", str(path), "--agent", AGENT])
    assert replayed.exit_code == 0, replayed.output
    assert "replay: identical journal and ledger" in replayed.output


def test_printed_replay_command_names_the_agent_and_replays_its_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure under `--agent file.py:fn` prints a replay command naming the agent by its
    absolute file; run from another folder, that command replays the same failure."""
    project = tmp_path / "my project"  # a space: the command must quote it
    _write_agent_files(project)
    path = _write_scenario(tmp_path / "scenarios", "tests.sim.own_agents.broken:offline",
                           amount=400)
    monkeypatch.chdir(project)
    failed = runner.invoke(app, ["sim", "run", str(path), "--harness", "naive",
                                 "--agent", "agents/my_agent.py:build"])
    assert failed.exit_code == 1, failed.output
    absolute = f"{(project / 'agents' / 'my_agent.py').resolve()}:build"
    # Shown relative to the working directory; the replay command names it absolutely.
    assert "agent: agents/my_agent.py:build" in failed.output
    line = next(x for x in failed.output.splitlines() if x.startswith("replay: tether "))
    argv = shlex.split(line.removeprefix("replay: tether "))
    assert argv[argv.index("--agent") + 1] == absolute
    monkeypatch.chdir(tmp_path)
    replayed = runner.invoke(app, argv)
    assert replayed.exit_code == 1, replayed.output
    assert "replay: identical journal and ledger" in replayed.output
    digest = next(x for x in failed.output.splitlines() if "journal " in x and "ledger " in x)
    assert digest in replayed.output


def test_no_replay_agent_when_the_scenario_names_it(tmp_path: Path) -> None:
    """Without `--agent`, the printed replay command needs no agent: the scenario names it."""
    path = _write_scenario(tmp_path, AGENT)
    failed = runner.invoke(app, ["sim", "run", str(path), "--harness", "naive"])
    assert failed.exit_code == 1, failed.output
    line = next(x for x in failed.output.splitlines() if x.startswith("replay: "))
    assert "--agent" not in line and "--harness naive" in line


# -- defects found (fixed in the core, then these pass) ------------------------------------

EXITS_AT_IMPORT = "import sys\n\ndef build(env):\n    return None\n\nsys.exit('usage: x ORDER')\n"


def test_a_file_that_exits_at_import_is_a_usage_error_every_time(tmp_path: Path) -> None:
    """An agent file that calls sys.exit at import (a script's argparse, say) is a UsageError
    naming the spec, and stays one when loaded again (no half-imported module is kept)."""
    (tmp_path / "script_agent.py").write_text(EXITS_AT_IMPORT)
    for _ in range(2):
        with pytest.raises(UsageError, match=r"script_agent\.py:build"):
            load_agent_factory("script_agent.py:build", tmp_path)


def test_a_file_that_exits_at_import_exits_2_through_the_cli(tmp_path: Path) -> None:
    """`tether sim run` on a scenario whose agent file exits at import exits 2 naming it."""
    (tmp_path / "exits_agent.py").write_text(EXITS_AT_IMPORT)
    path = _write_scenario(tmp_path, "exits_agent.py:build")
    _assert_clean_exit_2(runner.invoke(app, ["sim", "run", str(path)]), "exits_agent.py:build",
                         "importing")


@pytest.mark.parametrize("harness", ["default", "naive"])
def test_tools_failing_to_reach_a_real_service_are_a_usage_error(harness: str) -> None:
    """An agent whose tools ran but only failed against a real service, never reaching a
    simulated one, is refused with the no-simulated-service error, not judged NOT DONE."""
    spec = "tests.sim.own_agents.broken:offline_unreachable"
    with pytest.raises(UsageError, match="reached no simulated service"):
        run_episode(load_scenario_from(_scenario_data(spec)), 0, harness)


def test_a_factory_that_raises_exits_2_naming_the_spec(tmp_path: Path) -> None:
    """A factory that raises while building the agent exits 2 naming the spec and the error,
    never 1 (which says an invariant was violated)."""
    spec = "tests.sim.own_agents.broken:raises"
    path = _write_scenario(tmp_path, spec)
    _assert_clean_exit_2(runner.invoke(app, ["sim", "run", str(path)]), spec, "KeyError")


def test_a_model_script_that_raises_exits_2_naming_it(tmp_path: Path) -> None:
    """A `model: {script: ...}` function that raises exits 2 naming model.script and the
    error."""
    spec = "tests.sim.own_agents.broken:model_raises"
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({**_scenario_data(AGENT), "model": {"script": spec}}))
    _assert_clean_exit_2(runner.invoke(app, ["sim", "run", str(path)]), spec, "LookupError")


@pytest.mark.parametrize(("script", "said"), [
    ("tests.sim.own_agents.broken:not_a_model", "returned str; expected a model"),
    ("tests.sim.own_agents.no_such_module:model", "no module"),
    ("models.py:model", "no file"),
])
def test_bad_model_scripts_exit_2_naming_them(tmp_path: Path, script: str, said: str) -> None:
    """A model script that is missing or returns no model exits 2 naming model.script."""
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({**_scenario_data(AGENT), "model": {"script": script}}))
    result = runner.invoke(app, ["sim", "run", str(path)])
    _assert_clean_exit_2(result, script, said)
    assert "model.script" in result.output


@pytest.mark.parametrize("harness", ["default", "naive"])
def test_a_wired_tool_that_refuses_its_arguments_is_judged_not_refused(harness: str) -> None:
    """A tool built on env.client whose handler refuses a bad request before calling the
    service is the agent's behaviour to judge (task not done), not a wiring error."""
    spec = "tests.sim.own_agents.broken:refuses_bad_amounts"
    result = run_episode(load_scenario_from(_scenario_data(spec)), 0, harness)
    assert result.ok and not all(c.holds for c in result.task_checks)
    assert result.calls == []
