"""The pytest plugin: a user's reliability test with seeds as parameters, run by pytest."""

from __future__ import annotations

import shlex
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
    # The replay command names a repro file of the failing episode; run, it fails the same way.
    line = next(x for x in proc.stdout.splitlines() if x.startswith("replay: tether sim run ")
                and x.endswith("--seed 0 --harness naive"))
    argv = shlex.split(line.removeprefix("replay: tether "))
    replayed = subprocess.run([sys.executable, "-m", "tether.cli", *argv], capture_output=True,
                              text=True, timeout=120, check=False)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "exactly_once(effect=payments.refund" in replayed.stdout


SUITE_TEST = '''
def test_task_not_done_fails(tether_sim):
    tether_sim.assert_ok(tether_sim.run(r"{nothing}", seed=0))

def test_safety_only(tether_sim):
    tether_sim.assert_ok(tether_sim.run(r"{nothing}", seed=0), task=False)
'''


def test_assert_ok_fails_a_task_not_done_unless_asked_for_safety_only(tmp_path: Path) -> None:
    """assert_ok fails an episode whose task checks do not hold (the task was not done), and
    passes it with task=False when the invariants hold."""
    story = tmp_path / "nothing.yaml"
    # The charge does not exist: the agent cannot refund, and says so; nothing unsafe happens.
    story.write_text("name: nothing\nagent: refund\n"
                     "task: 'The kettle from my order ch_0404 arrived broken. Please refund it.'\n"
                     "invariants: [{at_most: {effect: payments.refund, n: 1}}]\n"
                     "success: [{exactly_once: {effect: payments.refund, "
                     "match: {charge: ch_0404}}}]\n")
    (tmp_path / "test_task.py").write_text(SUITE_TEST.format(nothing=story))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "task not done" in proc.stdout
