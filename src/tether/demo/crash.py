"""``tether crash-demo``: a refund run killed with SIGKILL mid-write, then recovered.

The same refund flow runs twice against a fresh bank:

* **naive** — what typical agent code does: call the provider without an idempotency key and,
  after a crash, run the whole flow again from the top;
* **tether** — the flow is a durable workflow: the refund's intent is journaled before the
  bank is called, the bank deduplicates by the key ``refund:{order_id}``, and a new worker
  resumes from the journal.

In both, the worker process is killed with SIGKILL right after the bank committed the refund and
before the worker learned the result — the timeout-after-commit that refunds customers twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tether.demo.bank import Bank
from tether.runtime.context import RunContext
from tether.runtime.journal import ProbePoint
from tether.runtime.runtime import Runtime, Workflow, workflow
from tether.runtime.tools import Tool, ToolContext, tool
from tether.store.sqlite import SQLiteStore

__all__ = ["DemoOutcome", "run_demo"]

# The demo's models are private: the simulator's services and tether.reference define the
# public Refund, Note, RefundArgs … (one name, one meaning: tests/test_names.py).


class _OrderRef(BaseModel):
    order_id: str


class _Order(BaseModel):
    order_id: str
    email: str
    amount_cents: int


ORDER = _Order(order_id="A-1001", email="ada@example.com", amount_cents=4200)


class _RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


class _Refund(BaseModel):
    refund_id: str
    order_id: str
    amount_cents: int
    replayed: bool


class _NoteArgs(BaseModel):
    order_id: str
    text: str


class _EmailArgs(BaseModel):
    to: str
    subject: str


class _Note(BaseModel):
    note_key: str


class _EmailSent(BaseModel):
    email_id: int


def build(bank: Bank) -> tuple[Workflow, dict[str, Tool[Any, Any]]]:
    """The refund workflow and its tools, bound to one bank."""

    @tool(effect="read")
    def lookup_order(ctx: ToolContext, args: _OrderRef) -> _Order:
        """Fetch the order from the system of record."""
        return ORDER

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def issue_refund(ctx: ToolContext, args: _RefundArgs) -> _Refund:
        """Refund an order; the bank deduplicates by idempotency key."""
        return _Refund(**bank.refund(args.order_id, args.amount_cents, ctx.idempotency_key))

    def find_note(ctx: ToolContext, key: str) -> _Note | None:
        found = bank.find_note(key)
        return None if found is None else _Note(**found)

    @tool(effect="reconcilable", key=lambda a: f"note:{a.order_id}", reconcile=find_note)
    def add_crm_note(ctx: ToolContext, args: _NoteArgs) -> _Note:
        """Record the refund on the customer's CRM timeline."""
        return _Note(**bank.add_note(ctx.idempotency_key, args.order_id, args.text))

    @tool(effect="idempotent", key=lambda a: f"email:{a.to}:{a.subject}")
    def send_confirmation(ctx: ToolContext, args: _EmailArgs) -> _EmailSent:
        """Email the customer; the email provider deduplicates by key."""
        return _EmailSent(**bank.send_email(args.to, args.subject, ctx.idempotency_key))

    @workflow(name="refund_order")
    async def refund_order(ctx: RunContext, order_id: str) -> dict[str, Any]:
        order = await ctx.call_tool(lookup_order, {"order_id": order_id})
        refund = await ctx.call_tool(
            issue_refund, {"order_id": order.order_id, "amount_cents": order.amount_cents})
        await ctx.call_tool(add_crm_note, {"order_id": order.order_id,
                                           "text": f"refunded {refund.refund_id}"})
        await ctx.call_tool(send_confirmation, {"to": order.email,
                                                "subject": f"Refund {refund.refund_id}"})
        return {"refund_id": refund.refund_id, "amount_cents": refund.amount_cents}

    tools = {t.name: t for t in (lookup_order, issue_refund, add_crm_note, send_confirmation)}
    return refund_order, tools


#: The demo worker's identity (the owner of the leases it holds).
WORKER = "crash-demo-worker"


def _kill_after_refund(point: ProbePoint) -> None:
    if point.name == "issue_refund" and point.point == "after_call":
        os.kill(os.getpid(), signal.SIGKILL)


async def _tether_worker(folder: Path, recover: bool) -> dict[str, Any]:
    bank = Bank(folder / "bank.db")
    wf, _ = build(bank)
    # One worker identity across the kill and the restart, as a supervisor restarting the same
    # worker gives: the restarted worker takes its own run back at once. (A different worker
    # would wait for the killed one's lease to expire; see tether.runtime.ownership.)
    runtime = Runtime(SQLiteStore(folder / "tether.db"), workflows=[wf],
                      probe=None if recover else _kill_after_refund, owner=WORKER)
    began = time.perf_counter()  # allow-wallclock: the recovery time the demo reports
    if recover:
        results = await runtime.recover()
        elapsed_ms = (time.perf_counter() - began) * 1000  # allow-wallclock: reported
        return {"statuses": [r.status.value for r in results],
                "run_ids": [r.run_id for r in results], "recover_ms": elapsed_ms}
    await runtime.start(wf, ORDER.order_id)
    return {}


def _naive_worker(folder: Path, crash: bool) -> dict[str, Any]:
    # What most agent code does: no journal, no idempotency key; a crash means "run it again".
    bank = Bank(folder / "bank.db")
    bank.refund(ORDER.order_id, ORDER.amount_cents, idempotency_key=None)
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)
    bank.add_note(f"note:{ORDER.order_id}", ORDER.order_id, "refunded")
    bank.send_email(ORDER.email, "Your refund", idempotency_key=None)
    return {}


@dataclass(frozen=True)
class DemoOutcome:
    """What one harness left behind at the bank."""

    harness: str
    first_exit: int
    counts: dict[str, int]
    status: str
    recover_ms: float | None
    run_id: str | None


def _spawn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.demo.crash", *args],
                          capture_output=True, text=True, check=False)


def run_demo(folder: Path) -> list[DemoOutcome]:
    """Run both harnesses in real processes under ``folder``; returns what each left behind."""
    outcomes = []
    for harness in ("naive", "tether"):
        where = folder / harness
        where.mkdir(parents=True, exist_ok=True)
        for stale in where.glob("*.db*"):
            stale.unlink()
        first = _spawn("worker", harness, str(where))
        second = _spawn("recover", harness, str(where))
        if second.returncode != 0:
            raise RuntimeError(f"the {harness} recovery process failed:\n{second.stderr}")
        report = json.loads(second.stdout or "{}")
        bank = Bank(where / "bank.db")
        counts = bank.counts(ORDER.order_id)
        bank.close()
        statuses = report.get("statuses", ["completed"])
        outcomes.append(DemoOutcome(
            harness=harness,
            first_exit=first.returncode,
            counts=counts,
            status=statuses[0] if statuses else "none",
            recover_ms=report.get("recover_ms"),
            run_id=(report.get("run_ids") or [None])[0],
        ))
    return outcomes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tether.demo.crash")
    parser.add_argument("mode", choices=["worker", "recover"])
    parser.add_argument("harness", choices=["naive", "tether"])
    parser.add_argument("folder", type=Path)
    ns = parser.parse_args(argv)
    if ns.harness == "naive":
        report = _naive_worker(ns.folder, crash=ns.mode == "worker")
    else:
        report = asyncio.run(_tether_worker(ns.folder, recover=ns.mode == "recover"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
