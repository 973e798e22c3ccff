"""The examples run as documented, and run again: every script is run twice (or more) in one
folder, as a user retrying it would, and the second run succeeds without repeating an effect."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(*argv: str, cwd: Path, env: dict[str, str] | None = None,
         expect: int = 0) -> str:
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})})
    assert proc.returncode == expect, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def _tether(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return _run("-m", "tether.cli", *args, cwd=cwd, env=env)


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_refund_agent_recovers_refunds_once_and_reports_a_rerun(tmp_path: Path) -> None:
    """examples/refund_agent.py: a 429 and a 503 later, one refund; run again, it reports the
    stored run (nothing executes again) instead of failing on the existing run id."""
    first = _run(str(EXAMPLES / "refund_agent.py"), cwd=tmp_path).splitlines()
    assert first == ["run refund-A-1001: completed",
                     "Done: refund re_0001 of $49.99 issued for order A-1001.",
                     "refunds in payments.db: 1",
                     "trace: tether trace refund-A-1001 --store runs.db"]
    trace = json.loads(_tether("trace", "refund-A-1001", "--store", "runs.db", "--json",
                               cwd=tmp_path))
    second = _run(str(EXAMPLES / "refund_agent.py"), cwd=tmp_path).splitlines()
    assert second[0] == ("run refund-A-1001: completed (finished earlier: its stored result, "
                         "nothing ran again)")
    assert second[1:] == first[1:]
    assert trace["status"] == "completed"
    assert json.loads(_tether("trace", "refund-A-1001", "--store", "runs.db", "--json",
                              cwd=tmp_path)) == trace  # the rerun journaled nothing
    assert _rows(tmp_path / "payments.db", "SELECT key FROM refunds") == [("refund:A-1001",)]


def test_refund_agent_killed_after_the_refund_resumes_and_refunds_once(tmp_path: Path) -> None:
    """``--crash`` SIGKILLs the process after the payments API committed the refund; the next
    invocation resumes the run from its journal, re-issues under the same key and gets the
    first refund back: one refund over three invocations."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / "refund_agent.py"), "--crash"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _rows(tmp_path / "payments.db", "SELECT refund_id FROM refunds") == [("re_0001",)]
    resumed = _run(str(EXAMPLES / "refund_agent.py"), cwd=tmp_path).splitlines()
    assert resumed[:3] == ["run refund-A-1001: completed (resumed from its journal)",
                           "Done: refund re_0001 of $49.99 issued for order A-1001.",
                           "refunds in payments.db: 1"]
    again = _run(str(EXAMPLES / "refund_agent.py"), cwd=tmp_path).splitlines()
    assert again[0].endswith("(finished earlier: its stored result, nothing ran again)")
    assert _rows(tmp_path / "payments.db", "SELECT count(*) FROM refunds") == [(1,)]


def test_guarded_agent_holds_the_injected_payout_until_denied_and_reruns(tmp_path: Path) -> None:
    """examples/guarded_agent.py: start → held (twice: the second start finds the run);
    `tether deny` → resume pays only the refund (twice: the second reports the stored run)."""
    def example(action: str) -> str:
        return _run(str(EXAMPLES / "guarded_agent.py"), action, "--store", "runs.db",
                    "--ledger", "payouts.db", cwd=tmp_path)

    assert example("start") == "run guarded-A-1001: waiting (waiting for approval:10)\n"
    assert example("start") == ("run guarded-A-1001: waiting (waiting for approval:10) — "
                                "started earlier\n")
    (held,) = json.loads(_tether("approvals", "list", "--store", "runs.db", "--json",
                                 cwd=tmp_path))
    assert held["run_id"] == "guarded-A-1001"
    assert held["args"] == {"account": "DE89370400440532013000", "amount_cents": 500000}
    assert held["sources"] == ["search_kb"]
    _tether("deny", held["run_id"], "--by", "grace", "--note", "injected", "--store", "runs.db",
            cwd=tmp_path)
    out = example("resume")
    assert "denied by grace (injected): 'send_payout' was not executed" in out
    assert example("resume") == out
    assert _rows(tmp_path / "payouts.db", "SELECT account, amount_cents FROM payouts") == \
        [("GB29NWBK60161331926819", 4999)]


def test_guarded_agent_resume_before_start_is_a_clear_error(tmp_path: Path) -> None:
    """``resume`` with no run in the store says so (exit 2), never a traceback."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / "guarded_agent.py"), "resume"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "no run 'guarded-A-1001' in runs.db; `start` it first" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_support_chat_drive_runs_again_on_a_fresh_and_on_the_same_store(tmp_path: Path) -> None:
    """examples/support_chat/drive.py: twice with its default (a new store each time), then
    twice on one store — the second run finds the five turns done and makes no refund."""
    drive = str(EXAMPLES / "support_chat" / "drive.py")
    for _ in range(2):
        assert "turns: 5, refunds in the payments ledger" in _run(drive, cwd=tmp_path)
    first = json.loads(_run(drive, "--store", "chat.db", "--json", cwd=tmp_path))
    again = json.loads(_run(drive, "--store", "chat.db", "--json", cwd=tmp_path))
    assert [t["status"] for t in first["turns"]] == ["completed"] * 5
    assert again["turns"] == first["turns"]
    assert again["transcript"] == first["transcript"]
    assert again["model_calls"] == first["model_calls"]
    assert [r["key"] for r in first["refunds"]] == ["refund:ch_0002", "refund:ch_0003"]
    assert again["refunds"] == []  # this process's payments world: nothing refunded again


def test_order_worker_runs_again_and_charges_the_order_once(tmp_path: Path) -> None:
    """examples/order_worker.py under a real ``tether worker``, twice in one folder: each time
    a run for order A-1001 is enqueued and completed; the provider keeps one charge per key,
    so the two runs charge the order once."""
    env = {"ORDER_WAIT_S": "0"}
    workflow = f"{EXAMPLES / 'order_worker.py'}:confirm_order"
    for _ in range(2):
        _tether("runs", "start", workflow, "--input", '"A-1001"', "--store", "runs.db",
                cwd=tmp_path, env=env)
        worker = subprocess.Popen(
            [sys.executable, "-m", "tether.cli", "worker", "--store", "runs.db", "--workflow",
             workflow, "--name", "w1", "--poll-s", "0.2"], cwd=tmp_path,
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            deadline = time.monotonic() + 60  # a test may wait on real time; the core may not
            while time.monotonic() < deadline:
                runs = json.loads(_tether("runs", "list", "--store", "runs.db", "--json",
                                          cwd=tmp_path))
                if all(r["status"] == "completed" for r in runs):
                    break
                time.sleep(0.3)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, out + err
        assert [r["status"] for r in runs] == ["completed"] * len(runs)
    assert len(runs) == 2
    assert _rows(tmp_path / "charges.db", "SELECT key, id FROM charges") == \
        [("charge:A-1001", "ch_1")]
