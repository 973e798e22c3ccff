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
