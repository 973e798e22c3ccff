"""Harness variants as data: the file format, its errors, applying a variant, comparing two."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.evals.sample_results import cell, sample_results
from tether.agent.agent import Agent
from tether.agent.window import ContextWindow, summarize_with
from tether.errors import UsageError
from tether.evals.compare import compare_harnesses
from tether.models.base import ModelSettings
from tether.models.scripted import ScriptedModel, reply
from tether.policy.policy import Policy, policy_from_dict
from tether.runtime.budgets import Budgets
from tether.runtime.failures import FailureType
from tether.runtime.retry import Action, RetryPolicy, Rule
from tether.sim.harness_spec import (
    BudgetsOverride,
    HarnessSpec,
    ModelOverride,
    RetryOverride,
    RuleOverride,
    WindowOverride,
    apply_harness,
    builtin,
    load_harness_file,
    resolve_harness,
)

GOOD = """\
harnesses:
  patient:
    description: more attempts for flaky tools
    retry:
      retry_budget: 40
      transient_tool_error: {action: retry_tool, max_attempts: 6, base_delay_s: 2.0}
      rate_limited: {max_attempts: 8}
    budgets: {max_steps: 10, max_cost_usd: null}
    window: {max_tokens: 4000, overflow_ratio: 0.25, compressor: drop_oldest}
    model: {temperature: 0.0, timeout_s: 20.0, extra: {seed: 1}}
    policy: policies/strict.yaml
  unguarded:
    policy: none
  inline:
    policy: {rules: [{deny_tools: {tools: [wire]}}]}
  plain:
    base: naive
"""

STRICT = "rules:\n  - deny_tools: {tools: [close_account]}\n"


def write(folder: Path, text: str, name: str = "harnesses.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    write(tmp_path / "policies", STRICT, "strict.yaml")
    return write(tmp_path, GOOD)


def own_agent() -> Agent:
    """An agent that configures everything itself, away from every default."""
    retry = RetryPolicy(retry_budget=11).with_rule(
        FailureType.TRANSIENT_TOOL_ERROR,
        Rule(Action.BACKOFF, max_attempts=2, base_delay_s=7.0, max_delay_s=70.0,
             multiplier=3.0, jitter=0.1, then=Action.ESCALATE))
    return Agent(
        name="own", model=ScriptedModel(lambda request: reply("done")), instructions="be kind",
        retry=retry, budgets=Budgets(max_steps=33, max_cost_usd=1.5, max_tool_calls=9),
        window=ContextWindow(max_tokens=9000, compressor=summarize_with(lambda m: "s"),
                             overflow_ratio=0.75),
        settings=ModelSettings(temperature=0.7, max_output_tokens=300, extra={"top_p": 0.9}),
        policy=policy_from_dict({"rules": [{"allow_tools": {"tools": ["lookup"]}}]}))


def test_good_file_loads(good: Path) -> None:
    """Every variant loads in file order, with its source and its policy path made absolute."""
    specs = load_harness_file(good)
    assert list(specs) == ["patient", "unguarded", "inline", "plain"]
    patient = specs["patient"]
    assert patient.name == "patient" and patient.base == "default"
    assert patient.source == str(good)
    assert patient.policy == str((good.parent / "policies" / "strict.yaml").resolve())
    assert patient.retry is not None and patient.retry.retry_budget == 40
    assert specs["plain"].base == "naive" and specs["unguarded"].policy == "none"


BAD: list[tuple[str, str]] = [
    ("- patient\n", "expected a mapping at the top with the key harnesses, found a list"),
    ("variants: {a: {}}\n", "variants: unknown key; expected harnesses"),
    ("harnesses: {}\n", "harnesses: expected a mapping of harness names to their settings, "
                        "with at least one, found an empty mapping"),
    ("harnesses: [a]\n", "harnesses: expected a mapping of harness names to their settings, "
                         "with at least one, found a list"),
    ("harnesses: {naive: {retry: {retry_budget: 1}}}\n",
     "harnesses.naive: naive is a built-in harness and cannot be redefined; choose another "
     "name (base: naive starts from it)"),
    ("harnesses: {default: {}}\n", "harnesses.default: default is a built-in harness and cannot"
                                   " be redefined; choose another name (base: default starts "
                                   "from it)"),
    ("harnesses: {'my harness': {}}\n",
     "harnesses: 'my harness' is not a harness name; expected letters, digits, '_', '-' and "
     "'.' (at most 64, starting with a letter or digit)"),
    ("harnesses: {a: 3}\n", "harnesses.a: expected a mapping of settings, found a number 3"),
    ("harnesses: {a: {name: b}}\n",
     "harnesses.a.name: unknown key (a variant's name is its key); expected one of base, "
     "description, retry, budgets, window, policy, model"),
    ("harnesses: {a: {retries: {}}}\n",
     "harnesses.a.retries: unknown key; expected one of base, description, retry, budgets, "
     "window, policy, model"),
    ("harnesses: {a: {source: x}}\n",
     "harnesses.a.source: unknown key; expected one of base, description, retry, budgets, "
     "window, policy, model"),
    ("harnesses: {a: {base: fast}}\n",
     "harnesses.a.base: input should be 'default' or 'naive' (found a string 'fast')"),
    ("harnesses: {a: {retry: {transient: {}}}}\n",
     "harnesses.a.retry.transient: extra inputs are not permitted; expected one of "
     "retry_budget, rate_limited, model_unavailable, model_rejected, context_overflow, "
     "malformed_output, invalid_tool_call, transient_tool_error, ambiguous_write, "
     "permanent_tool_error, tool_result_invalid, auth_expired, policy_denied, "
     "budget_exceeded, no_progress, crash (found a mapping)"),
    ("harnesses: {a: {retry: {rate_limited: {action: wait}}}}\n",
     "harnesses.a.retry.rate_limited.action: input should be 'backoff', 'compress', "
     "'reformat', 'retry_tool', 'disable_tool', 'refresh_auth', 'resolve', 'observe', "
     "'escalate' or 'fail' (found a string 'wait')"),
    ("harnesses: {a: {retry: {rate_limited: {max_attempts: true}}}}\n",
     "harnesses.a.retry.rate_limited.max_attempts: expected an integer, found a boolean True"),
    ("harnesses: {a: {retry: {rate_limited: {max_attempts: '5'}}}}\n",
     "harnesses.a.retry.rate_limited.max_attempts: expected an integer, found a string '5'; "
     "write the number without quotes"),
    ("harnesses: {a: {retry: {rate_limited: {max_attempts: 0}}}}\n",
     "harnesses.a.retry.rate_limited.max_attempts: input should be greater than or equal to 1 "
     "(found a number 0)"),
    ("harnesses: {a: {retry: {rate_limited: {multiplier: 0.5}}}}\n",
     "harnesses.a.retry.rate_limited.multiplier: input should be greater than or equal to 1 "
     "(found a number 0.5)"),
    ("harnesses: {a: {retry: {rate_limited: {max_attempts: null}}}}\n",
     "harnesses.a.retry.rate_limited.max_attempts: expected a value, found nothing (null); "
     "leave the key out to keep the agent's value"),
    ("harnesses: {a: {retry: {retry_budget: .inf}}}\n",
     "harnesses.a.retry.retry_budget: input should be a finite number (found a number inf)"),
    ("harnesses: {a: {budgets: {max_steps: 5000}}}\n",
     "harnesses.a.budgets.max_steps: input should be less than or equal to 1000 "
     "(found a number 5000)"),
    ("harnesses: {a: {budgets: {max_steps: null}}}\n",
     "harnesses.a.budgets.max_steps: expected a value, found nothing (null); leave the key "
     "out to keep the agent's value"),
    ("harnesses: {a: {budgets: {on_breach: pause}}}\n",
     "harnesses.a.budgets.on_breach: input should be 'stop' or 'escalate' "
     "(found a string 'pause')"),
    ("harnesses: {a: {window: {overflow_ratio: 1.0}}}\n",
     "harnesses.a.window.overflow_ratio: input should be less than 1 (found a number 1.0)"),
    ("harnesses: {a: {window: {compressor: summarize}}}\n",
     "harnesses.a.window.compressor: input should be 'drop_oldest' "
     "(found a string 'summarize')"),
    ("harnesses: {a: {window: {count: 4}}}\n",
     "harnesses.a.window.count: extra inputs are not permitted; expected one of max_tokens, "
     "overflow_ratio, compressor (found a number 4)"),
    ("harnesses: {a: {model: {temperature: 3}}}\n",
     "harnesses.a.model.temperature: input should be less than or equal to 2 "
     "(found a number 3)"),
    ("harnesses: {a: {model: {name: gpt}}}\n",
     "harnesses.a.model.name: extra inputs are not permitted; expected one of temperature, "
     "max_output_tokens, timeout_s, stream, extra, tool_choice, journal_input (found a string "
     "'gpt')"),
    ("harnesses: {a: {policy: null}}\n",
     "harnesses.a.policy: expected a value, found nothing (null); leave the key out to keep "
     "the agent's value; write none to run without a policy"),
    ("harnesses: {a: {policy: {rules: [{bogus: {}}]}}}\n",
     "harnesses.a.policy: rules[0]: unknown rule kind 'bogus'; expected one of deny_tools, "
     "allow_tools, argument_limit, require_role, environment_gate, taint_gate, "
     "argument_provenance, control_flow"),
    ("harnesses: {a: {base: naive, retry: {retry_budget: 3}, policy: none}}\n",
     "harnesses.a: base naive runs the agent's model and tools in a hand-written loop that "
     "has no retry rules, budgets, window, policy or model settings, so retry, policy would "
     "change nothing; remove them or use base: default"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_file_says_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    """Each class of bad input is a UsageError: file, key path, what was expected and found."""
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_harness_file(path)
    assert str(caught.value) == f"{path}: {message}"


def test_missing_policy_file_is_named(tmp_path: Path) -> None:
    """A policy path that leads nowhere names the file it looked for, relative to the file."""
    path = write(tmp_path, "harnesses: {a: {policy: gone.yaml}}\n")
    with pytest.raises(UsageError) as caught:
        load_harness_file(path)
    assert str(caught.value) == (
        f"{path}: harnesses.a.policy: no policy file {tmp_path.resolve() / 'gone.yaml'}; a "
        "relative path is relative to the harness file's folder, or write none to run without "
        "a policy")


def test_schema_maps_to_real_settings() -> None:
    """Every key of the schema is a field of the class it overrides (and none is missing)."""
    assert set(RuleOverride.model_fields) == {f.name for f in dataclasses.fields(Rule)}
    assert set(RetryOverride.model_fields) == {"retry_budget"} | {f.value for f in FailureType}
    assert set(BudgetsOverride.model_fields) == {f.name for f in dataclasses.fields(Budgets)}
    assert set(ModelOverride.model_fields) == set(ModelSettings.model_fields)
    assert set(WindowOverride.model_fields) == {
        f.name for f in dataclasses.fields(ContextWindow)} - {"count"}


def test_builtins_and_resolution(good: Path, tmp_path: Path) -> None:
    """naive and default are built in; variants resolve from files; unknown names list all."""
    assert builtin("naive").base == "naive" and builtin("default").base == "default"
    assert resolve_harness("default", [good]) == builtin("default")
    assert resolve_harness("patient", [good]).retry is not None
    with pytest.raises(UsageError) as caught:
        resolve_harness("hasty", [good])
    assert str(caught.value) == ("unknown harness 'hasty'; known harnesses: naive, default, "
                                 "patient, unguarded, inline, plain")
    with pytest.raises(UsageError) as caught:
        resolve_harness("patient")
    assert str(caught.value) == ("unknown harness 'patient'; known harnesses: naive, default "
                                 "(variants are defined in a harness file: --harnesses FILE)")
    other = tmp_path / "other"
    other.mkdir()
    twice = write(other, "harnesses: {plain: {base: naive}}\n")
    with pytest.raises(UsageError) as caught:
        resolve_harness("plain", [good, twice])
    assert str(caught.value) == (f"harness plain is defined in both {good} and {twice}; "
                                 "rename one of them")


def test_every_override_lands(good: Path) -> None:
    """Each override replaces what it names, on top of the agent's own settings."""
    agent = own_agent()
    run = apply_harness(agent, load_harness_file(good)["patient"])
    assert run.retry.retry_budget == 40
    rule = run.retry.rule(FailureType.TRANSIENT_TOOL_ERROR)
    # Named fields change; the agent's own (not the library's default) values stay.
    assert rule == Rule(Action.RETRY_TOOL, max_attempts=6, base_delay_s=2.0, max_delay_s=70.0,
                        multiplier=3.0, jitter=0.1, then=Action.ESCALATE)
    limited = RetryPolicy().rule(FailureType.RATE_LIMITED)
    assert run.retry.rule(FailureType.RATE_LIMITED) == dataclasses.replace(limited,
                                                                           max_attempts=8)
    assert run.budgets == dataclasses.replace(agent.budgets, max_steps=10, max_cost_usd=None)
    assert run.window.max_tokens == 4000 and run.window.overflow_ratio == 0.25
    assert run.window.compressor.__name__ == "drop_oldest"
    assert run.window.count is agent.window.count
    assert run.settings == ModelSettings(temperature=0.0, max_output_tokens=300, timeout_s=20.0,
                                         extra={"top_p": 0.9, "seed": 1})
    assert run.policy is not None and run.policy != agent.policy
    assert [type(r).__name__ for r in run.policy.rules] == [
        type(r).__name__ for r in policy_from_dict({"rules": [
            {"deny_tools": {"tools": ["close_account"]}}]}).rules]
    # Everything a harness does not own is the agent's, and the agent itself is unchanged.
    # (tools: copies carrying the variant's transient max_attempts; see the test below)
    assert list(run.tools) == list(agent.tools)
    for name in ("name", "model", "instructions", "prices", "parallel_tool_calls",
                 "refresh_auth", "format_reminder", "environment"):
        assert getattr(run, name) is getattr(agent, name)
    assert agent.retry.retry_budget == 11 and agent.budgets.max_steps == 33


def test_policy_none_and_inline(good: Path) -> None:
    """``none`` runs without the agent's policy; an inline mapping replaces it."""
    specs = load_harness_file(good)
    assert apply_harness(own_agent(), specs["unguarded"]).policy is None
    inline = apply_harness(own_agent(), specs["inline"]).policy
    assert isinstance(inline, Policy) and len(inline.rules) == 1


def test_untouched_agent_keeps_everything() -> None:
    """A variant that overrides nothing (and the built-ins) returns the agent's settings."""
    agent = own_agent()
    for spec in (builtin("default"), builtin("naive"), HarnessSpec(name="same")):
        assert apply_harness(agent, spec) == agent


_BUDGETS: dict[str, st.SearchStrategy[Any]] = {
    "max_steps": st.integers(1, 1000),
    "max_model_calls": st.none() | st.integers(1, 10**6),
    "max_tool_calls": st.none() | st.integers(1, 10**6),
    "max_tokens": st.none() | st.integers(1, 10**12),
    "max_cost_usd": st.none() | st.floats(0.0, 1e9),
    "max_duration_s": st.none() | st.floats(0.0, 86_400.0),
    "max_retries": st.none() | st.integers(0, 10**6),
    "repeat_limit": st.none() | st.integers(1, 10**6),
    "failure_streak_limit": st.none() | st.integers(1, 10**6),
    "on_breach": st.sampled_from(["stop", "escalate"]),
}


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=_BUDGETS))
def test_budget_overrides_touch_only_their_fields(given_budgets: dict[str, Any]) -> None:
    """Any subset of budget fields lands as given; every other field keeps the agent's."""
    agent = own_agent()
    spec = HarnessSpec.model_validate({"name": "v", "budgets": given_budgets})
    run = apply_harness(agent, spec)
    for field in dataclasses.fields(Budgets):
        expected = given_budgets.get(field.name, getattr(agent.budgets, field.name))
        assert getattr(run.budgets, field.name) == expected


def test_long_retry_budget_backoff_stays_finite() -> None:
    """A retry budget of thousands set as data waits the capped delay, not an overflow."""
    spec = HarnessSpec.model_validate({"name": "stubborn", "retry": {
        "retry_budget": 5000, "rate_limited": {
            "max_attempts": 5000, "multiplier": 2.0, "max_delay_s": 30.0, "jitter": 0.0}}})
    rule = apply_harness(own_agent(), spec).retry.rule(FailureType.RATE_LIMITED)
    assert rule.delay_s(1100, random.Random(1)) == 30.0
    assert dataclasses.replace(rule, base_delay_s=0.0).delay_s(1100, random.Random(1)) == 0.0


def test_compare_harnesses_per_suite() -> None:
    """A clearly better variant is better with p < 0.05; an equal one is the same."""
    results = sample_results()
    results.cells = [
        cell("default", "baseline", 18, 20), cell("patient", "baseline", 18, 20),
        cell("default", "faults", 8, 40), cell("patient", "faults", 36, 40),
        cell("patient", "chaos", 5, 20),  # only one of them ran it: not compared
    ]
    rows = compare_harnesses(results, "default", "patient")
    assert [(r.harness, r.suite) for r in rows] == [("default → patient", "baseline"),
                                                     ("default → patient", "faults")]
    same, better = rows
    assert same.verdict == "same" and same.difference == 0.0 and same.p_value == 1.0
    assert better.verdict == "better" and better.p_value < 0.001
    assert better.difference == pytest.approx(0.7)
    assert (better.passed_a, better.passed_b) == (8, 36)
    reverse = compare_harnesses(results, "patient", "default")
    assert reverse[1].verdict == "worse" and reverse[1].difference == pytest.approx(-0.7)


def test_compare_harnesses_needs_both() -> None:
    """A harness the campaign did not run, or a harness with itself, is a usage error."""
    results = sample_results()
    with pytest.raises(UsageError, match="harness hasty has no cells in these results; they "
                                         "hold naive, default"):
        compare_harnesses(results, "naive", "hasty")
    with pytest.raises(UsageError, match="not naive with itself"):
        compare_harnesses(results, "naive", "naive")


_RULE: dict[str, st.SearchStrategy[Any]] = {
    "action": st.sampled_from([a.value for a in Action]),
    "max_attempts": st.integers(1, 10**6),
    "base_delay_s": st.floats(0.0, 3600.0),
    "max_delay_s": st.floats(0.0, 3600.0),
    "multiplier": st.floats(1.0, 100.0),
    "jitter": st.floats(0.0, 1.0),
    "then": st.sampled_from([a.value for a in Action]),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(FailureType)), st.fixed_dictionaries({}, optional=_RULE),
       st.none() | st.integers(0, 10**6))
def test_rule_overrides_touch_only_their_fields(failure: FailureType, fields: dict[str, Any],
                                                budget: int | None) -> None:
    """Any subset of one failure type's rule fields lands as given; the rest of that rule,
    every other rule and an unnamed retry budget keep the agent's."""
    agent = own_agent()
    retry: dict[str, Any] = {failure.value: fields}
    if budget is not None:
        retry["retry_budget"] = budget
    run = apply_harness(agent, HarnessSpec.model_validate({"name": "v", "retry": retry}))
    mine = agent.retry.rule(failure)
    for field in dataclasses.fields(Rule):
        expected = fields.get(field.name, getattr(mine, field.name))
        assert getattr(run.retry.rule(failure), field.name) == expected
    for other in FailureType:
        if other is not failure:
            assert run.retry.rule(other) == agent.retry.rule(other)
    assert run.retry.retry_budget == (agent.retry.retry_budget if budget is None else budget)


def test_transient_max_attempts_bounds_each_tools_own_attempts() -> None:
    """A variant's transient_tool_error.max_attempts reaches the tool layer (each tool's
    attempts), which is what retries a transient failure and re-issues an ambiguous write; a
    variant that does not set it leaves the tools as they are."""
    from pydantic import BaseModel

    from tether.models.scripted import ScriptedModel, reply
    from tether.runtime.tools import tool

    class Args(BaseModel):
        x: int

    @tool(effect="idempotent", args=Args, result=int, attempts=5)
    async def bump(ctx: Any, args: Args) -> int:
        return args.x

    agent = Agent(name="a", model=ScriptedModel(lambda request: reply("hi")), tools=[bump])
    hasty = HarnessSpec.model_validate(
        {"name": "hasty", "retry": {"transient_tool_error": {"max_attempts": 1}}})
    assert [t.attempts for t in apply_harness(agent, hasty).tools] == [1]
    assert agent.tools[0].attempts == 5
    budget_only = HarnessSpec.model_validate({"name": "b", "retry": {"retry_budget": 3}})
    assert apply_harness(agent, budget_only).tools == agent.tools
