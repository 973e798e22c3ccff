"""tether_tools on a durable runtime outside the simulator: a call a killed process left
unfinished is settled by ``runtime.recover()`` in the next process, and toolsets made again on
one runtime (an agent built per request) share it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether.sim.foreign import tether_tools

ROOT = Path(__file__).resolve().parents[2]


class RefundArgs(BaseModel):
    charge: str


def refund_tool(log: Path, *, die: bool = False) -> tether.Tool[Any, Any]:
    """An idempotent refund that logs each request's key; ``die``: the process is killed
    right after the provider applied the request."""

    @tether.tool(name="refund", effect="idempotent", args=RefundArgs, result=dict,
                 key=lambda a: f"refund:{a.charge}")
    def refund(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        with log.open("a") as out:
            out.write(ctx.idempotency_key + "\n")
        if die:
            import os

            os._exit(9)
        return {"id": "re_1", "charge": args.charge}

    return refund


def killed_mid_call(db: str, log: str) -> None:
    """The first process: its worker dies inside the refund call."""
    runtime = tether.Runtime(tether.SQLiteStore(db), owner="desk-worker")
    (refund,) = tether_tools([refund_tool(Path(log), die=True)], runtime)
    asyncio.run(refund(charge="ch_1"))


def test_a_call_a_killed_process_left_is_settled_by_recover_in_the_next(tmp_path: Path) -> None:
    """The next process makes the tools on the same store and recovers: the refund is
    re-issued under its key (the provider deduplicates) and the run completes."""
    db, log = tmp_path / "tools.db", tmp_path / "keys.log"
    code = ("from tests.sim.test_foreign_tools_runtime import killed_mid_call; "
            f"killed_mid_call({str(db)!r}, {str(log)!r})")
    died = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert died.returncode == 9, died.stderr
    runtime = tether.Runtime(tether.SQLiteStore(str(db)), owner="desk-worker")
    tether_tools([refund_tool(log)], runtime)
    (settled,) = asyncio.run(runtime.recover())
    assert settled.status is tether.RunStatus.COMPLETED, settled.reason
    assert settled.result == {"id": "re_1", "charge": "ch_1"}
    assert log.read_text().split() == ["refund:ch_1", "refund:ch_1"]


def test_toolsets_made_again_on_one_runtime_share_it(tmp_path: Path) -> None:
    """An agent built per request takes tether_tools of the same tools on the same runtime
    each time: every call runs, journaled on that runtime."""
    log = tmp_path / "keys.log"
    runtime = tether.Runtime(clock=tether.VirtualClock(), seed=1)
    first = tether_tools([refund_tool(log)], runtime)[0]
    second = tether_tools([refund_tool(log)], runtime)[0]
    assert asyncio.run(first(charge="ch_1")) == {"id": "re_1", "charge": "ch_1"}
    assert asyncio.run(second(charge="ch_2")) == {"id": "re_1", "charge": "ch_2"}
    assert log.read_text().split() == ["refund:ch_1", "refund:ch_2"]
    assert len(runtime.store.list_runs()) == 2


def test_a_call_escalated_in_an_earlier_process_is_refused_in_the_next(tmp_path: Path) -> None:
    """An unsafe write whose outcome tether escalated stays escalated for the runtime's
    store: tools made again on it (the next process) refuse the same call without sending
    it, with and without a business key."""
    db = str(tmp_path / "tools.db")
    sent: list[str] = []

    def unsafe(business_key: bool) -> tether.Tool[Any, Any]:
        @tether.tool(name=f"wire_{business_key}", effect="unsafe", args=RefundArgs,
                     result=dict, key=(lambda a: f"wire:{a.charge}") if business_key else None)
        def wire(ctx: tether.ToolContext, args: RefundArgs) -> Any:
            sent.append(args.charge)
            raise TimeoutError("no answer")  # the outcome of the write is unknown

        return wire

    first = tether.Runtime(tether.SQLiteStore(db), clock=tether.VirtualClock(), seed=1)
    for business_key in (True, False):
        (call,) = tether_tools([unsafe(business_key)], first)
        with pytest.raises(tether.ToolFailed, match="escalated"):
            asyncio.run(call(charge="ch_1"))
    assert sent == ["ch_1", "ch_1"]
    later = tether.Runtime(tether.SQLiteStore(db), clock=tether.VirtualClock(), seed=2)
    for business_key in (True, False):
        (call,) = tether_tools([unsafe(business_key)], later)
        with pytest.raises(tether.ToolFailed, match="escalated"):
            asyncio.run(call(charge="ch_1"))
        with pytest.raises(tether.ToolFailed):
            asyncio.run(call(charge="ch_2"))  # another call of the tool is sent
    assert sent == ["ch_1", "ch_1", "ch_2", "ch_2"]
