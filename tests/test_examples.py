"""The examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_refund_agent_example_recovers_and_refunds_once(tmp_path: Path) -> None:
    """examples/refund_agent.py: a 429 and a 503 later, one refund and a trace command."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "refund_agent.py"), "--store", str(tmp_path / "r.db")],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(": completed")
    assert lines[1] == "Done: refund re_0001 of $49.99 issued for order A-1001."
    assert lines[2] == "refunds issued: 1"
    assert lines[3].startswith("trace: tether trace run_")


def test_guarded_agent_example_holds_the_injected_payout_until_denied(tmp_path: Path) -> None:
    """examples/guarded_agent.py: start → held; `tether deny` → resume pays only the refund."""
    import json
    import sqlite3

    def example(action: str) -> str:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / "guarded_agent.py"), action, "--store",
             str(tmp_path / "runs.db"), "--ledger", str(tmp_path / "payouts.db")],
            capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def tether_cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "tether.cli", *args, "--store",
                               str(tmp_path / "runs.db")], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "waiting (waiting for approval:" in example("start")
    (held,) = json.loads(tether_cli("approvals", "list", "--json"))
    assert held["args"] == {"account": "DE89370400440532013000", "amount_cents": 500000}
    assert held["sources"] == ["search_kb"]
    tether_cli("deny", held["run_id"], "--by", "grace", "--note", "injected")
    out = example("resume")
    assert "denied by grace (injected): 'send_payout' was not executed" in out
    db = sqlite3.connect(tmp_path / "payouts.db")
    assert db.execute("SELECT account, amount_cents FROM payouts").fetchall() == \
        [("GB29NWBK60161331926819", 4999)]
    db.close()
