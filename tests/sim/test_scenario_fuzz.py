"""Mutated scenario files end in a real run or exit 2 naming the file: never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.yaml_mutations import SCENARIO_FILES, mutated_file, renumbered_file, typed_file
from tether.cli import app
from tether.specs import key_path

runner = CliRunner()
BASES = [path.read_bytes() for path in SCENARIO_FILES]


def sim_run(path: Path, seed: int) -> tuple[int, str]:
    """``tether sim run PATH --seed SEED`` in-process: exit code and output. Any exception
    other than the CLI's own exit is re-raised, so hypothesis shows it."""
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", str(seed)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_clear(code: int, output: str, path: Path) -> None:
    """A run (0/1), or exit 2 with one line that starts with the file's name."""
    assert code in (0, 1, 2), output
    assert "Traceback" not in output
    if code == 2:
        message = output.strip()
        assert message.startswith(f"error: {path}: "), message[:500]
        assert "\n" not in message, message[:500]


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "scenario.yaml"


@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(text=mutated_file(BASES), seed=st.integers(0, 2**63 - 1))
def test_mutated_scenarios_run_or_exit_2_with_file_and_path(scenario_path: Path, text: bytes,
                                                           seed: int) -> None:
    """Every mutation of a real scenario runs (exit 0/1) or exits 2 with a one-line message."""
    scenario_path.write_bytes(text)
    code, output = sim_run(scenario_path, seed)
    assert_clear(code, output, scenario_path)


@settings(max_examples=100, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(text=typed_file(BASES), seed=st.integers(0, 50))
def test_values_changed_within_their_types_run_or_exit_2(scenario_path: Path, text: bytes,
                                                         seed: int) -> None:
    """Extreme but well-typed values (huge counts, long strings, emptied lists) are refused at
    load with their bound or run to a verdict: exit 0/1/2, never a traceback or a hang."""
    scenario_path.write_bytes(text)
    code, output = sim_run(scenario_path, seed)
    assert_clear(code, output, scenario_path)


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=renumbered_file(BASES))
def test_a_boolean_or_numeric_string_for_a_number_exits_2_naming_its_key(
        scenario_path: Path, case: tuple[bytes, tuple[object, ...]]) -> None:
    """A YAML true or a quoted "25" where a count, amount or probability is expected is never
    taken for 1 or 25: exit 2 with the file and the key path (expected, found)."""
    text, path = case
    scenario_path.write_bytes(text)
    code, output = sim_run(scenario_path, 1)
    assert code == 2, output
    assert_clear(code, output, scenario_path)
    assert f"{key_path('', path)}: expected" in output, output
