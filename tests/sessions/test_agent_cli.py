"""`tether agent check` and `tether agent show` on the shipped YAML agent and on broken copies
of it (exit 2, one line naming the file and the key path, never a traceback), and the YAML
agent running an episode in the simulator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli import app
from tether.sim import load_scenario, run_episode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_chat"
runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.output


def test_check_accepts_the_shipped_agent() -> None:
    """The example's agent file checks clean (exit 0) and says what it found."""
    code, out = _invoke("agent", "check", str(EXAMPLE / "agent.yaml"))
    assert code == 0, out
    assert "support-chat" in out


def test_show_prints_the_tools_and_the_rendered_instructions() -> None:
    """show --json lists every tool with its effect and schemas, and renders a variable."""
    code, out = _invoke("agent", "show", str(EXAMPLE / "agent.yaml"), "--var", "plan=gold",
                        "--json")
    assert code == 0, out
    shown = json.loads(out)
    text = json.dumps(shown)
    assert "confirm_in_app" in text and "issue_refund" in text
    assert "gold" in text


@pytest.mark.parametrize(("old", "new", "where"), [
    ("name: support-chat", "name: [support-chat]", "name"),
    ("effect: read", "effect: sometimes", "effect"),
])
def test_a_broken_copy_is_one_line_naming_file_and_key(tmp_path: Path, old: str, new: str,
                                                       where: str) -> None:
    """A mistake in the file: exit 2, the file's path and the key named, no traceback."""
    copy = tmp_path / "support_chat"
    shutil.copytree(EXAMPLE, copy)
    agent = copy / "agent.yaml"
    text = agent.read_text()
    assert old in text
    agent.write_text(text.replace(old, new, 1))
    code, out = _invoke("agent", "check", str(agent))
    assert code == 2, out
    assert "agent.yaml" in out and where in out
    assert "Traceback" not in out


def test_a_missing_file_is_exit_2() -> None:
    """A path that does not exist: exit 2 naming it."""
    code, out = _invoke("agent", "check", "/nonexistent/agent.yaml")
    assert code == 2 and "/nonexistent/agent.yaml" in out


def test_the_yaml_agent_passes_its_scenario_in_the_simulator() -> None:
    """The example's scenario names the YAML agent; under a timeout after the refund
    committed, tether refunds once and the episode passes."""
    scenario = load_scenario(EXAMPLE / "scenarios" / "broken_kettle.yaml")
    result = run_episode(scenario, 1)
    assert result.ok and result.done, result.verdicts
    assert len([e for e in result.ledger if e["operation"] == "refund"]) == 1
