"""`tether sim run` says whether the task was done as asked, beside the invariants' verdict."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from tether.cli import app

STORY = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / \
    "refund_timeout_after_commit.yaml"
runner = CliRunner()


def run_with_success(tmp_path: Path, success: str) -> tuple[int, str]:
    """Run the timeout story with its success checks replaced."""
    base = {k: v for k, v in yaml.safe_load(STORY.read_text()).items() if k != "success"}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False) + f"success: {success}\n")
    result = runner.invoke(app, ["sim", "run", str(path), "--seed", "3"])
    return result.exit_code, result.output


def test_a_task_not_done_as_asked_is_not_printed_as_pass(tmp_path: Path) -> None:
    """Invariants hold but the task check fails: the headline says NOT DONE (never PASS), the
    failing task check is printed with its detail, and the exit status stays 0 (safe)."""
    code, output = run_with_success(
        tmp_path, "[{exactly_once: {effect: payments.refund, match: {amount: 1}}}]")
    assert code == 0, output
    headline = output.splitlines()[0]
    assert headline.startswith("NOT DONE ") and "PASS" not in headline, headline
    assert "  task NOT  exactly_once(effect=payments.refund, match={'amount': 1})" in output
    assert "expected exactly 1" in output


def test_a_task_done_as_asked_is_pass_with_its_checks(tmp_path: Path) -> None:
    """Invariants hold and every task check holds: PASS, each check printed as ok."""
    code, output = run_with_success(
        tmp_path, "[{exactly_once: {effect: payments.refund, match: {charge: ch_0001}}}, "
                  "{at_most: {effect: payments.refund, n: 1}}]")
    assert code == 0, output
    assert output.startswith("PASS "), output
    assert "  task ok   at_most(effect=payments.refund, n=1)" in output


def test_success_checks_that_only_forbid_leave_the_task_unchecked(tmp_path: Path) -> None:
    """Success checks that hold when nothing happened (at_most, every, never) cannot say the
    task was done: UNCHECKED, never PASS."""
    code, output = run_with_success(
        tmp_path, "[{at_most: {effect: payments.refund, n: 1}}, "
                  "{every: {effect: payments.refund, match: {charge: ch_0001}}}]")
    assert code == 0, output
    assert output.startswith("UNCHECKED "), output
    assert "task: not checked (every success check only forbids" in output
