"""A run waiting on client tools, its worker SIGKILLed, continued by other processes: no model
call paid twice, no server tool repeated, the client write requested (so performed) once.

This file is also the app the tests start as real processes::

    python tests/crash/test_client_tool_crash.py --store runs.db --log effects.log \
        (start [--kill-at POS:POINT] [--linger] | client [--kill-at POS:POINT] | repeat)

``start`` starts the run; ``--linger`` keeps the process alive after the run suspended, as a
long-lived worker would, until the test kills it. ``client`` plays the caller: it performs every
pending client call it is shown (naively, without deduplicating) and continues the execution,
or recovers the run when nothing is pending. ``repeat`` sends the last results again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    ModelRequest,
    ModelResponse,
    Runtime,
    ScriptedModel,
    SQLiteStore,
    SystemClock,
    ToolCall,
    ToolContext,
    client_tool,
    tool,
)
from tether.models.scripted import call, reply

RUN_ID = "run-client-checkout"
HERE = Path(__file__)


class OrderRef(BaseModel):
    order_id: str


class Question(BaseModel):
    question: str


class Charge(BaseModel):
    order_id: str
    amount_cents: int


class Confirmed(BaseModel):
    ok: bool


class Receipt(BaseModel):
    charge_id: str


def build_agent(log: Path) -> Agent:
    def note(line: str) -> None:
        with log.open("a") as f:
            f.write(line + "\n")

    @tool
    def lookup(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Look up an order."""
        note("server:lookup")
        return {"order_id": args.order_id, "amount_cents": 1200}

    confirm = client_tool("confirm", args=Question, result=Confirmed,
                          description="Ask the user to confirm.")
    charge = client_tool("charge", args=Charge, result=Receipt, effect="idempotent",
                         key=lambda a: f"charge:{a.order_id}",
                         description="Charge the user's card on their device.")

    def script(request: ModelRequest) -> ModelResponse:
        note("model")
        seen = [m.content for m in request.messages if m.role == "tool"]
        if not seen:
            return ModelResponse(finish_reason="tool_calls", tool_calls=(
                ToolCall(id="s1", name="lookup", arguments='{"order_id": "o1"}'),
                ToolCall(id="q1", name="confirm", arguments='{"question": "pay 12.00?"}')))
        if len(seen) == 2:
            return call("charge", {"order_id": "o1", "amount_cents": 1200}, call_id="k1")
        return reply(f"paid: {seen[-1]}")

    return Agent(name="checkout", model=ScriptedModel(script), tools=[lookup, confirm, charge])


def answer(request: dict[str, Any], log: Path) -> Any:
    """What the caller's infrastructure does for one request (each one it sees, once)."""
    with log.open("a") as f:
        f.write(f"client:{request['tool']}\n")
    if request["tool"] == "charge":
        return {"charge_id": f"ch_{request['idempotency_key']}"}
    return {"ok": True}


def main(argv: list[str]) -> None:
    import argparse

    sys.path.insert(0, str(HERE.parent))
    from app import Killer  # type: ignore[import-not-found]  # by path, as agent_app.py

    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("mode", choices=["start", "client", "repeat"])
    parser.add_argument("--kill-at")
    parser.add_argument("--linger", action="store_true")
    args = parser.parse_args(argv)
    agent = build_agent(args.log)
    rt = Runtime(SQLiteStore(args.store), clock=SystemClock(), workflows=[agent], seed=3,
                 probe=Killer(args.kill_at), owner="client-crash-worker")
    sent = Path(args.store + ".last-results.json")
    if args.mode == "start":
        result = asyncio.run(rt.start(agent, "check out order o1", run_id=RUN_ID))
    elif args.mode == "repeat":
        result = asyncio.run(rt.continue_execution(RUN_ID, json.loads(sent.read_text())))
    else:
        pending = rt.pending_client_calls(RUN_ID)
        if not pending:
            (result,) = asyncio.run(rt.recover())
        else:
            results = {p.call_id: answer(p.as_data(), args.log) for p in pending}
            sent.write_text(json.dumps(results))
            result = asyncio.run(rt.continue_execution(RUN_ID, results))
    print(json.dumps({"status": result.status.value, "result": result.result}), flush=True)
    if args.linger:
        while True:  # a worker that stays up: the test kills it
            time.sleep(1)


def invoke(folder: Path, *args: str, expect_rc: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE), "--store", str(folder / "runs.db"), "--log",
           str(folder / "effects.log"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == expect_rc, f"{cmd}: rc {proc.returncode}\n{proc.stderr}"
    return json.loads(proc.stdout) if expect_rc == 0 else {}


def start_and_kill_while_waiting(folder: Path) -> None:
    cmd = [sys.executable, str(HERE), "--store", str(folder / "runs.db"), "--log",
           str(folder / "effects.log"), "start", "--linger"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the run has suspended
        assert json.loads(line)["status"] == "waiting", line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def effects(folder: Path) -> dict[str, int]:
    lines = (folder / "effects.log").read_text().splitlines()
    return {k: lines.count(k) for k in sorted(set(lines))}


EXPECTED = {"client:charge": 1, "client:confirm": 1, "model": 3, "server:lookup": 1}
ANSWER = 'paid: {"charge_id": "ch_charge:o1"}'


@pytest.mark.slow
def test_worker_killed_while_waiting_is_continued_by_other_processes(tmp_path: Path) -> None:
    """SIGKILL the idle worker of a waiting run; callers in new processes finish it."""
    start_and_kill_while_waiting(tmp_path)
    assert invoke(tmp_path, "client")["status"] == "waiting"  # now the charge is asked
    done = invoke(tmp_path, "client")
    assert (done["status"], done["result"]["answer"]) == ("completed", ANSWER)
    assert effects(tmp_path) == EXPECTED


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["lookup:after_result", "1:after_model"])
def test_worker_killed_before_the_client_calls_were_asked(tmp_path: Path, kill: str) -> None:
    """SIGKILL mid-turn before the request: a recovery asks the client, nothing runs twice."""
    invoke(tmp_path, "start", "--kill-at", kill, expect_rc=-signal.SIGKILL)
    assert invoke(tmp_path, "client")["status"] == "waiting"  # nothing pending: recovers
    assert invoke(tmp_path, "client")["status"] == "waiting"
    done = invoke(tmp_path, "client")
    assert (done["status"], done["result"]["answer"]) == ("completed", ANSWER)
    assert effects(tmp_path) == EXPECTED


@pytest.mark.slow
def test_caller_killed_while_continuing_and_a_duplicate_continue(tmp_path: Path) -> None:
    """The process that continued dies after the model answered; a recovery requests the
    charge once; a repeated continue of the last results changes nothing."""
    invoke(tmp_path, "start")
    invoke(tmp_path, "client", "--kill-at", "4:after_model", expect_rc=-signal.SIGKILL)
    assert invoke(tmp_path, "client")["status"] == "waiting"  # recovers: the charge is asked
    done = invoke(tmp_path, "client")
    assert done["status"] == "completed"
    again = invoke(tmp_path, "repeat")
    assert again == done
    assert effects(tmp_path) == EXPECTED


if __name__ == "__main__":
    main(sys.argv[1:])
