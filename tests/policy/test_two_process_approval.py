"""Three real processes: A runs until it waits and exits; B approves with the CLI; A' resumes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

APP = Path(__file__).with_name("approval_app.py")


def app(folder: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(APP), "--store", str(folder / "runs.db"),
                           "--ledger", str(folder / "ledger.db"), *extra],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def refunds(folder: Path) -> list[tuple[str, int]]:
    path = folder / "ledger.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT key, amount FROM refunds").fetchall()
    finally:
        db.close()


def test_approval_across_three_processes_gives_exactly_one_refund(tmp_path: Path) -> None:
    """A waits and exits; B lists and approves via `tether`; A' resumes; one refund."""
    first = app(tmp_path)
    assert first["status"] == "waiting" and first["waiting_for"].startswith("approval:")
    assert refunds(tmp_path) == []

    listed = cli("approvals", "list", "--store", str(tmp_path / "runs.db"), "--json")
    assert listed.returncode == 0, listed.stderr
    (pending,) = json.loads(listed.stdout)
    assert (pending["run_id"], pending["tool"], pending["role"]) == \
        ("run-refund-approval", "refund", "supervisor")
    assert pending["args"] == {"order_id": "A-7", "amount_cents": 72000}

    approved = cli("approve", "run-refund-approval", "--store", str(tmp_path / "runs.db"),
                   "--by", "grace", "--role", "supervisor", "--note", "customer verified")
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout and "grace" in approved.stdout
    assert refunds(tmp_path) == []  # approving does not run anything by itself

    done = app(tmp_path, "--recover")
    assert done["status"] == "completed"
    assert refunds(tmp_path) == [("refund:A-7", 72000)]
    again = cli("approve", "run-refund-approval", "--store", str(tmp_path / "runs.db"),
                "--by", "grace")
    assert again.returncode == 2 and "already completed" in again.stdout + again.stderr


def test_deny_from_another_process_reaches_the_model(tmp_path: Path) -> None:
    """B denies; A' resumes; no refund; the answer says who denied."""
    app(tmp_path)
    denied = cli("deny", "run-refund-approval", "--store", str(tmp_path / "runs.db"),
                 "--by", "grace", "--note", "over the limit")
    assert denied.returncode == 0, denied.stderr
    done = app(tmp_path, "--recover")
    assert done["status"] == "completed" and refunds(tmp_path) == []
    assert done["result"]["answer"] == \
        "denied by grace (over the limit): 'refund' was not executed"
