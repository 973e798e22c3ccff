"""A scenario sets the declared variables of the YAML agent it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tether.errors import UsageError
from tether.sim.agent_ref import load_agent_factory
from tether.sim.episode import run_episode
from tether.sim.scenario import load_scenario

AGENT = """
name: echo-plan
instructions: "You serve {{ customer }} on the {{ plan }} plan."
variables:
  customer: {type: string, default: the customer}
  plan: {type: string, default: basic}
  seats: {type: integer, default: 1}
model: {provider: scripted, script: "model.py:script"}
"""

MODEL = '''
from tether.models.scripted import reply

def script(request):
    return reply(request.messages[0].content)
'''


def project(tmp_path: Path, variables: dict[str, object] | None) -> Path:
    """An agent file, its scripted model, and a scenario naming the file with ``variables``."""
    (tmp_path / "agent.yaml").write_text(AGENT)
    (tmp_path / "model.py").write_text(MODEL)
    scenario: dict[str, object] = {"name": "plan", "agent": "agent.yaml", "task": "hello"}
    if variables is not None:
        scenario["variables"] = variables
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_the_agent_is_built_with_the_scenarios_variables(tmp_path: Path) -> None:
    """The variables a scenario sets reach the YAML agent's instructions; the others keep
    their defaults."""
    path = project(tmp_path, {"plan": "pro"})
    result = run_episode(load_scenario(path), seed=1)
    assert result.answer == "You serve the customer on the pro plan."


def test_without_variables_the_files_defaults_apply(tmp_path: Path) -> None:
    """A scenario that sets none runs the agent on its declared defaults."""
    result = run_episode(load_scenario(project(tmp_path, None)), seed=1)
    assert result.answer == "You serve the customer on the basic plan."


@pytest.mark.parametrize(("variables", "expected"), [
    ({"plam": "pro"}, "no variable 'plam' is declared"),
    ({"seats": "two"}, "variables.seats"),
])
def test_an_undeclared_or_mistyped_variable_is_refused_before_the_episode(
        tmp_path: Path, variables: dict[str, object], expected: str) -> None:
    """A name the file does not declare, or a value of the wrong type, is a UsageError naming
    the agent file and the variable."""
    path = project(tmp_path, variables)
    with pytest.raises(UsageError) as caught:
        run_episode(load_scenario(path), seed=1)
    assert expected in str(caught.value)
    assert "agent.yaml" in str(caught.value)


def test_variables_for_a_python_agent_are_refused_not_ignored(tmp_path: Path) -> None:
    """Only a YAML agent declares variables: giving some to a Python factory is an error, so a
    scenario never runs an agent other than the one it describes."""
    with pytest.raises(UsageError, match="only a YAML agent declares variables"):
        load_agent_factory("refund", tmp_path, variables={"plan": "pro"})
