"""An agent run SIGKILLed mid-loop in a real process and recovered by a fresh one: no model call
is paid twice, no completed tool call repeated, every effect once, the same final answer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .app import ORDER_ID, External

APP = Path(__file__).with_name("agent_app.py")
# Positions: 0 now, 1 model, 2 lookup_order, 3 model, 4 refund, 5 model, 6 close_ticket, 7 model.
KILLS = ["1:after_model", "lookup_order:after_result", "3:after_model", "refund:after_intent",
         "refund:after_call", "refund:after_result", "5:after_model", "close_ticket:after_call",
         "7:after_model"]


def invoke(folder: Path, *args: str, expect_rc: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, str(APP), "--store", str(folder / "runs.db"), "--external",
           str(folder / "ext.db"), "--model-log", str(folder / "model.log"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == expect_rc, f"{cmd}: rc {proc.returncode}\n{proc.stderr}"
    return json.loads(proc.stdout) if expect_rc == 0 else {}


def model_calls(folder: Path) -> list[str]:
    return (folder / "model.log").read_text().splitlines()


def effects(folder: Path) -> dict[str, dict[str, int]]:
    ext = External(folder / "ext.db")
    try:
        return {table: ext.effects(table) for table in ("refunds", "tickets")}
    finally:
        ext.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    folder = tmp_path_factory.mktemp("reference")
    out = invoke(folder)
    assert out["status"] == "completed"
    return out, model_calls(folder)


@pytest.mark.slow
@pytest.mark.parametrize("kill", KILLS)
def test_killed_agent_resumes_without_repeating_model_or_tool_calls(
        tmp_path: Path, kill: str, reference: tuple[dict[str, Any], list[str]]) -> None:
    """SIGKILL at ``kill``, recover in a new process: same answer, same paid model calls."""
    expected, expected_calls = reference
    invoke(tmp_path, "--kill-at", kill, expect_rc=-signal.SIGKILL)
    calls_before_crash = model_calls(tmp_path)
    out = invoke(tmp_path, "--recover")
    # A write killed between its intent and its result is re-issued under its key on
    # recovery: one retry, counted as the journal counts it.
    reissued = kill.endswith(("after_intent", "after_call"))
    assert out["result"]["retries"] == expected["result"]["retries"] + int(reissued)
    assert {**out, "result": {**out["result"], "retries": 0}} == \
        {**expected, "result": {**expected["result"], "retries": 0}}
    assert out["result"]["answer"].startswith(f"Refunded order {ORDER_ID} (re_1)")
    # Every model call journaled before the kill is replayed, not asked again.
    assert model_calls(tmp_path) == expected_calls
    assert len(calls_before_crash) <= len(expected_calls)
    assert effects(tmp_path) == {"refunds": {f"refund:{ORDER_ID}": 1},
                                 "tickets": {f"close:{ORDER_ID}": 1}}
