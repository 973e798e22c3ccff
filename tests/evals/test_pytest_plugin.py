"""The pytest plugin: a user's reliability test with seeds as parameters, run by pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

USER_TEST = '''
import pytest

STORY = r"{story}"

@pytest.mark.parametrize("seed", range(3))
def test_refund_exactly_once(tether_sim, seed):
    tether_sim.assert_ok(tether_sim.run(STORY, seed=seed))

@pytest.mark.parametrize("seed", range(2))
def test_naive_is_caught(tether_sim, seed):
    tether_sim.assert_ok(tether_sim.run(STORY, seed=seed, harness="naive"))

def test_under_a_suite(tether_sim):
    tether_sim.assert_ok(tether_sim.suite(STORY, "crash_recovery", seed=4))
'''


def test_user_tests_pass_under_tether_and_fail_naive_with_a_replay(tmp_path: Path) -> None:
    """The fixture comes from the installed plugin; failures name invariants and replay."""
    story = SCENARIOS / "refund_timeout_after_commit.yaml"
    (tmp_path / "test_reliability.py").write_text(USER_TEST.format(story=story))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout and "2 failed" in proc.stdout
    assert "exactly_once(effect=payments.refund" in proc.stdout
    assert f"replay: tether sim run {story} --seed 0 --harness naive" in proc.stdout
