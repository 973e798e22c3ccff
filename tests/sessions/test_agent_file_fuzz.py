"""Mutated agent files are checked and shown, or refused with exit 2 naming the file: never a
traceback, never a silently different agent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

from tests.yaml_mutations import mutated_file, renumbered_file, typed_file
from tether.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_chat"
BASES = [(EXAMPLE / "agent.yaml").read_bytes()]
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def agent_cli(*args: str) -> tuple[int, str]:
    """``tether agent ARGS`` in-process: exit code and everything printed. Any exception other
    than the CLI's own exit is re-raised, so hypothesis shows it."""
    result = runner.invoke(app, ["agent", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_clear(code: int, output: str, path: Path) -> None:
    """Exit 0, or exit 2 with one line that starts with the file's name."""
    assert code in (0, 2), output[-2000:]
    assert "Traceback" not in output
    if code == 2:
        message = output.strip().splitlines()[-1]
        assert message.startswith(f"error: {path}: "), message[:500]


@pytest.fixture(scope="module")
def agent_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the support-chat example (its model, tools and policy beside the file)."""
    folder = tmp_path_factory.mktemp("agent_fuzz") / "support_chat"
    shutil.copytree(EXAMPLE, folder)
    return folder / "agent.yaml"


@settings(max_examples=120, **SETTINGS)  # type: ignore[arg-type]
@given(text=mutated_file(BASES))
def test_mutated_agent_files_check_or_exit_2_with_file_and_path(agent_path: Path,
                                                              text: bytes) -> None:
    """Every structural or textual mutation of the shipped agent file passes ``agent check``
    and ``agent show`` or exits 2 with a one-line message naming the file."""
    agent_path.write_bytes(text)
    code, output = agent_cli("check", str(agent_path))
    assert_clear(code, output, agent_path)
    shown, output = agent_cli("show", str(agent_path))
    assert_clear(shown, output, agent_path)
    assert shown == code, "check and show disagree about the same file"


@settings(max_examples=80, **SETTINGS)  # type: ignore[arg-type]
@given(text=typed_file(BASES))
def test_values_changed_within_their_types_check_or_exit_2(agent_path: Path,
                                                          text: bytes) -> None:
    """Extreme but well-typed values (huge budgets, long strings, emptied lists) are refused with
    their bound or accepted: exit 0 or 2, never a traceback."""
    agent_path.write_bytes(text)
    code, output = agent_cli("check", str(agent_path))
    assert_clear(code, output, agent_path)


@settings(max_examples=40, **SETTINGS)  # type: ignore[arg-type]
@given(case=renumbered_file(BASES))
def test_a_boolean_or_numeric_string_for_a_number_exits_2_naming_its_key(
        agent_path: Path, case: tuple[bytes, tuple[object, ...]]) -> None:
    """A YAML ``true`` or a quoted ``"20"`` where a budget, delay or size is expected is never
    taken for a number: exit 2 with the file and the key path."""
    text, path = case
    agent_path.write_bytes(text)
    code, output = agent_cli("check", str(agent_path))
    assert code == 2, output
    assert_clear(code, output, agent_path)
    key = str(path[-1])
    assert key in output, (path, output)
