"""Agent YAML files build the same tether.Agent objects as Python, or say where they are wrong."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.agent.agent import Agent
from tether.errors import UsageError
from tether.models.scripted import ScriptedModel
from tether.runtime.budgets import Budgets
from tether.runtime.failures import FailureType
from tether.runtime.retry import Action
from tether.sessions.loader import definition_from_dict, load_agent, load_definition
from tether.sessions.spec import references, render

H = "tests.sessions.helpers_agents"
BASE: dict[str, Any] = {
    "name": "helper",
    "instructions": "Help {{ who }} on the {{ plan }} plan.",
    "variables": {"who": {"type": "string"}, "plan": {"type": "string", "default": "basic"},
                  "limits": {"type": "object", "default": {"refund": 5000}}},
    "model": {"provider": "scripted", "script": f"{H}:script",
              "settings": {"temperature": 0.0, "max_output_tokens": 200}},
    "tools": [f"{H}:echo", {"server": f"{H}:note"}, {"client": {
        "name": "confirm", "description": "Ask the user.", "effect": "read",
        "args": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        "result": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}],
    "triggers": {"user-message": {"input": {"type": "object",
                                            "properties": {"text": {"type": "string"}}},
                                  "turn": "{{ input.text }}",
                                  "variables": {"plan": "{{ input.text }}"}}},
    "budgets": {"max_steps": 7, "max_cost_usd": 0.25},
    "retry": {"retry_budget": 4, "rules": {"rate_limited": {"action": "fail"}}},
    "policy": {"rules": [{"deny_tools": {"tools": ["note"]}}]},
    "window": {"max_tokens": 900},
    "memory": {"namespace": "helpers", "subjects": ["user:{{ who }}"]},
    "environment": "staging",
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bad(tmp_path: Path, data: Any, *, build: bool = False) -> str:
    """Load (and build) ``data``: it must raise a one-line UsageError naming the file."""
    path = write(tmp_path, data)
    with pytest.raises(UsageError) as caught:
        definition = load_definition(path)
        definition.check()
        if build:
            definition.build({"who": "Ada"})
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message.removeprefix(f"{path}: ")


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


def test_a_yaml_agent_is_the_same_objects_as_python(tmp_path: Path) -> None:
    """Every key lands on the tether.Agent field a Python author would set."""
    agent = load_agent(write(tmp_path, BASE), {"who": "Ada"})
    assert isinstance(agent, Agent) and isinstance(agent.model, ScriptedModel)
    assert agent.instructions == "Help Ada on the basic plan."
    assert [t.name for t in agent.tools] == ["echo", "note", "confirm"]
    assert agent.tools[1].effect.value == "idempotent"
    assert agent.budgets == Budgets(max_steps=7, max_cost_usd=0.25)
    assert agent.retry.retry_budget == 4
    assert agent.retry.rule(FailureType.RATE_LIMITED).action is Action.FAIL
    assert agent.retry.rule(FailureType.MALFORMED_OUTPUT).action is Action.REFORMAT
    assert agent.policy is not None and len(agent.policy.rules) == 1
    assert agent.window.max_tokens == 900 and agent.environment == "staging"
    assert agent.settings.max_output_tokens == 200


def test_a_yaml_agent_runs(tmp_path: Path) -> None:
    """The built agent runs on the runtime like a Python one: tool call, then answer."""
    agent = load_agent(write(tmp_path, BASE), {"who": "Ada"})
    result = agent.run_sync("hello")
    assert result.result["answer"] == 'got {"echo": "hi"}'


def test_client_tools_keep_their_json_schemas(tmp_path: Path) -> None:
    """A client tool shows the model its schema as written and validates arguments by it."""
    agent = load_agent(write(tmp_path, BASE), {"who": "Ada"})
    confirm = agent.tools[2]
    assert confirm.spec().parameters == BASE["tools"][2]["client"]["args"]
    assert confirm.result_schema()["properties"] == {"ok": {"type": "boolean"}}
    with pytest.raises(Exception, match="input schema"):
        confirm.validate_args({"q": 3})


def test_render_fills_references_and_refuses_missing_values() -> None:
    """Templates insert strings as-is, other values as JSON; a missing value is an error."""
    assert render("a {{x}} b {{ y.z }}", {"x": "1", "y": {"z": [1, 2]}}) == "a 1 b [1, 2]"
    assert references("{{ a }}{{b.c}}") == ["a", "b.c"]
    with pytest.raises(UsageError, match="no value for"):
        render("{{ nope }}", {})
    with pytest.raises(UsageError, match="opens no variable reference"):
        references("{{ not valid! }}")


def test_values_are_never_evaluated_or_rerendered() -> None:
    """A value that looks like a template is inserted as text, not rendered again."""
    assert render("{{ a }}", {"a": "{{ b }}", "b": "secret"}) == "{{ b }}"


def test_variables_are_typed_given_or_defaulted(tmp_path: Path) -> None:
    """Given values are type-checked; required ones must be given; undeclared are refused."""
    definition = load_definition(write(tmp_path, BASE))
    assert definition.variables({"who": "Ada"}) == {"who": "Ada", "plan": "basic",
                                                    "limits": {"refund": 5000}}
    with pytest.raises(UsageError, match=r"variables\.who: required"):
        definition.variables({})
    with pytest.raises(UsageError, match=r"variables\.who: expected a string"):
        definition.variables({"who": 3})
    with pytest.raises(UsageError, match="no variable 'whom'"):
        definition.variables({"who": "A", "whom": "B"})


def test_tool_factories_receive_the_environment(tmp_path: Path) -> None:
    """A server tool path naming a function of the environment is called with it."""
    data = changed(("tools",), [f"{H}:made", f"{H}:PAIR"])
    agent = load_definition(write(tmp_path, data)).build({"who": "A"}, env="ENV")
    assert [t.name for t in agent.tools] == ["from_env", "echo", "note"]
    assert agent.tools[0].description == "built with 'ENV'"


# Each key's bad input: (key path changed, new value or _DELETE, what the message names).
BAD: list[tuple[tuple[Any, ...], Any, str]] = [
    (("name",), _DELETE, "name: field required"),
    (("name",), "", "name: string should match"),
    (("name",), 5, "name: input should be a valid string"),
    (("instructions",), "Hi {{ nobody }}", "instructions: {{ nobody }} names no declared"),
    (("instructions",), "Hi {{ who", "instructions: {{ at character 3 opens no variable"),
    (("instructions",), "{{ plan.x }}", "reads into 'plan', a string"),
    (("variables", "who"), {"type": "strin"}, "variables.who.type: input should be"),
    (("variables", "who"), {"type": "integer", "default": "3"},
     "variables.who: default: expected an integer, found a string '3'"),
    (("variables", "who"), {"typo": 1}, "variables.who.typo: extra inputs"),
    (("variables",), {"input": "string"}, "variables: variable name 'input'"),
    (("model",), _DELETE, "model: field required"),
    (("model", "provider"), "gpt", "model.provider: input should be"),
    (("model", "script"), _DELETE, "model: a scripted model needs script"),
    (("model",), {"provider": "openai"}, "provider openai needs name"),
    (("model",), {"provider": "openai", "name": "x", "script": "a:b"}, "script: is for"),
    (("model", "settings", "temperature"), 9, "model.settings.temperature: input should be"),
    (("model", "settings", "max_output_tokens"), True, "model.settings.max_output_tokens: "
                                                      "expected an integer, found a boolean"),
    (("model", "settings", "timeout_s"), "30", "expected a number, found a string '30'"),
    (("tools",), "x:y", "tools: input should be a valid list"),
    (("tools", 0), "no_colon", "tools[0]: expected package.module:attr"),
    (("tools", 0), f"{H}:missing", "tools[0]: 'tests.sessions.helpers_agents:missing': "
                                   "tests.sessions.helpers_agents has no 'missing'"),
    (("tools", 0), f"{H}:NOT_A_TOOL", "tools[0]: 'tests.sessions.helpers_agents:NOT_A_TOOL' is "
                                      "a number"),
    (("tools", 0), f"{H}:two_args", "the tool factory takes (env, other)"),
    (("tools", 0), "no.such.module:x", "no module 'no'"),
    (("tools", 0), "missing.py:x", "no file"),
    (("tools", 1), {"server": 5}, "tools[1].server: expected package.module:attr"),
    (("tools", 1), {"severs": "a:b"}, "tools[1]: unknown tool kind 'severs'"),
    (("tools", 1), {"server": "a:b", "client": {}}, "tools[1]: expected a mapping with one key"),
    (("tools", 2, "client", "name"), "has space", "tools[2].client.name: string should match"),
    (("tools", 2, "client", "effect"), _DELETE, "tools[2].client.effect: field required"),
    (("tools", 2, "client", "effect"), "maybe", "tools[2].client.effect: input should be"),
    (("tools", 2, "client", "args"), {"type": "string"}, "type must be object"),
    (("tools", 2, "client", "args"), {"type": "object", "required": ["zz"], "properties": {}},
     "'zz' is not one of the properties"),
    (("tools", 2, "client", "result"), {"type": "objekt"},
     "tools[2].client.result: not a usable JSON Schema: (top).type"),
    (("tools", 2, "client", "args", "properties", "q"), {"type": "string", "minLength": -1},
     "not a usable JSON Schema"),
    (("tools", 2, "client", "timeout_s"), 0, "tools[2].client.timeout_s: input should be"),
    (("tools",), [f"{H}:echo", f"{H}:echo"], "tools: two tools are named 'echo'"),
    (("tools",), [{"mcp": {"url": "ftp://x"}}], "tools[0].mcp.url: string should match"),
    (("tools",), [{"mcp": {"url": "http://x", "effects": {"a": "wrong"}}}],
     "tools[0].mcp.effects.a: input should be"),
    (("triggers", "user-message", "turn"), "{{ input.nope }}", "reads an input field"),
    (("triggers", "user-message", "turn"), "{{ other }}", "names no declared variable"),
    (("triggers", "user-message", "variables"), {"ghost": "x"},
     "triggers.user-message.variables.ghost: no such variable"),
    (("triggers", "user-message", "input"), {"type": 3}, "triggers.user-message.input"),
    (("triggers",), {"bad name!": {}}, "trigger name 'bad name!'"),
    (("budgets", "max_steps"), 0, "budgets.max_steps: input should be greater"),
    (("budgets", "max_steps"), "20", "budgets.max_steps: expected an integer, found a string"),
    (("budgets", "max_cost_usd"), float("inf"), "budgets.max_cost_usd: input should be"),
    (("budgets", "on_breach"), "explode", "budgets.on_breach: input should be"),
    (("budgets", "max_stepz"), 3, "budgets.max_stepz: extra inputs are not permitted; expected "
                                  "one of max_steps"),
    (("retry", "rules"), {"rate_limitd": {"action": "fail"}}, "retry.rules.rate_limitd"),
    (("retry", "rules"), {"rate_limited": {"action": "nap"}}, "retry.rules.rate_limited.action"),
    (("retry", "rules"), {"rate_limited": {"action": "fail", "jitter": 2}}, "jitter"),
    (("retry", "retry_budget"), -1, "retry.retry_budget: input should be greater"),
    (("retry", "preset"), "always", "retry.preset: input should be"),
    (("policy",), {"rules": [{"deny_tools": {"tools": 3}}]},
     "policy.rules[0].deny_tools.tools: input should be a valid list"),
    (("policy",), {"default": "maybe"}, "policy.default: input should be"),
    (("policy",), "missing-policy.yaml", "policy: no policy file"),
    (("policy",), 3, "policy: expected a policy file's path or the policy itself (a mapping), "
                     "found a number 3"),
    (("window", "max_tokens"), 0, "window.max_tokens: input should be greater"),
    (("window", "compress"), "squash", "window.compress: expected drop_oldest"),
    (("window", "compress"), f"{H}:NOT_A_TOOL", "window.compress"),
    (("window", "overflow_ratio"), 1.5, "window.overflow_ratio: input should be less"),
    (("memory", "namespace"), "", "memory.namespace: string should match"),
    (("memory", "subjects"), ["{{ stranger }}"], "memory.subjects[0]: {{ stranger }}"),
    (("memory", "max_facts"), -3, "memory.max_facts: input should be greater"),
    (("environment",), "", "environment: string should match"),
    (("parallel_tool_calls",), "yes", "parallel_tool_calls: expected a boolean"),
    (("surprise",), 1, "surprise: extra inputs are not permitted; expected one of name"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD,
                         ids=[".".join(map(str, p)) + f"={v!r}"[:30] for p, v, _ in BAD])
def test_each_keys_bad_input_names_file_path_and_problem(tmp_path: Path, path: tuple[Any, ...],
                                                         value: Any, expected: str) -> None:
    """Every key's bad value is a one-line UsageError: file, key path, what is wrong."""
    message = bad(tmp_path, changed(path, value), build=True)
    assert expected.lower() in message.lower(), message


def test_not_a_mapping_at_the_top(tmp_path: Path) -> None:
    """A file whose top is a list is refused as such."""
    assert "expected a mapping at the top" in bad(tmp_path, ["name"])


def test_inline_and_file_policies_are_the_policy_spec(tmp_path: Path) -> None:
    """A policy path is read relative to the agent file, through the policy YAML spec."""
    (tmp_path / "p.yaml").write_text("default: deny\nrules: []\n")
    agent = load_agent(write(tmp_path, changed(("policy",), "p.yaml")), {"who": "A"})
    assert agent.policy is not None and agent.policy.default == "deny"


def test_definition_from_dict_names_the_source() -> None:
    """Errors of data given directly name the source it was given as."""
    with pytest.raises(UsageError, match=r"^<mine>: model: field required"):
        definition_from_dict({"name": "x"}, where="<mine>")
