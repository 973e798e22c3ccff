"""Workers in real processes racing to recover the same runs, for the ownership tests.

    python tests/crash/owner_app.py --store runs.db --log calls.log --prepare 6
    python tests/crash/owner_app.py --store runs.db --log calls.log --recover --go go.flag
    python tests/crash/owner_app.py --store runs.db --log calls.log --hold held --until done.flag

``--store`` is a SQLite file or a ``postgresql://`` DSN (with ``--schema``). Every invocation of
a write handler appends one line ``RUN TOOL PID`` to ``--log`` (opened with ``O_APPEND``, so
lines from several processes never interleave): the test counts handler *invocations*, not
effects.

* ``--prepare K`` starts K runs that each crash just before their first write, leaving them
  ``running`` under a lease of ``--lease-ttl`` seconds, then SIGKILLs itself.
* ``--recover`` signals readiness (``--ready``), waits for ``--go`` to exist so every worker
  starts at the same moment, calls ``Runtime.recover()`` and prints the run ids it finished.
* ``--hold RUN`` starts one run whose first write blocks (holding the lease, renewed by the
  heartbeat) until ``--until`` exists; it writes ``--ready`` once inside the handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tether import (
    ProbePoint,
    RunContext,
    Runtime,
    SQLiteStore,
    SystemClock,
    ToolContext,
    Workflow,
    tool,
    workflow,
)
from tether.store.base import Store


class Order(BaseModel):
    order_id: str


def wait_for_file(path: str | None) -> None:
    while path and not os.path.exists(path):
        time.sleep(0.002)


def touch(path: str | None) -> None:
    if path:
        Path(path).write_text("1")


def build_workflow(log: str, *, block_until: str | None = None,
                   ready: str | None = None) -> Workflow:
    def note(tc: ToolContext, name: str) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{tc.run_id} {name} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    def find_label(tc: ToolContext, key: str) -> dict[str, Any] | None:
        return None  # the provider never saw it: a reconcile would execute the write again

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find_label)
    def create_label(tc: ToolContext, args: Order) -> dict[str, Any]:
        """Create a return label (not deduplicated by the provider)."""
        note(tc, "create_label")
        touch(ready)
        wait_for_file(block_until)
        time.sleep(0.05)  # a provider round trip: widens the window two workers could share
        return {"label": f"lbl-{args.order_id}"}

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: Order) -> dict[str, Any]:
        """Close the ticket."""
        note(tc, "close_ticket")
        return {"closed": args.order_id}

    @workflow(name="label_and_close")
    async def label_and_close(ctx: RunContext, order_id: str) -> dict[str, Any]:
        await ctx.step("plan", lambda: {"order": order_id})
        label = await ctx.call_tool(create_label, {"order_id": order_id})
        await ctx.call_tool(close_ticket, {"order_id": order_id})
        return dict(label)

    return label_and_close


def open_store(spec: str, schema: str) -> Store:
    if spec.startswith("postgresql://"):
        from tether.store.postgres import PostgresStore

        return PostgresStore(spec, schema=schema)
    return SQLiteStore(spec)


class Dies(BaseException):
    """The worker dying on the spot: unlike a simulated ``Crash`` (a death already noticed,
    whose lease is released), nothing runs after it, so the run keeps its live lease until
    it expires — what a SIGKILL leaves behind."""


def crash_before_first_write(point: ProbePoint) -> None:
    if point.name == "create_label" and point.point == "before_intent":
        raise Dies()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--schema", default="tether")
    parser.add_argument("--log", required=True)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--ready", default=None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", type=int, metavar="K")
    mode.add_argument("--recover", action="store_true")
    mode.add_argument("--hold", metavar="RUN_ID")
    parser.add_argument("--go", default=None)
    parser.add_argument("--until", default=None)
    args = parser.parse_args(argv)

    store = open_store(args.store, args.schema)
    if args.prepare is not None:
        wf = build_workflow(args.log)
        runtime = Runtime(store, clock=SystemClock(), workflows=[wf],
                          probe=crash_before_first_write, lease_ttl_s=args.lease_ttl)
        for n in range(args.prepare):
            with contextlib.suppress(Dies):  # the run is left mid-way, as intended
                asyncio.run(runtime.start(wf, f"A-{n}", run_id=f"run-{n}"))
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if args.hold is not None:
        wf = build_workflow(args.log, block_until=args.until, ready=args.ready)
        runtime = Runtime(store, clock=SystemClock(), workflows=[wf],
                          lease_ttl_s=args.lease_ttl)
        result = asyncio.run(runtime.start(wf, args.hold, run_id=args.hold))
        print(json.dumps({"finished": [result.run_id], "status": result.status.value}))
        return 0
    wf = build_workflow(args.log)
    runtime = Runtime(store, clock=SystemClock(), workflows=[wf], lease_ttl_s=args.lease_ttl)
    touch(args.ready)
    wait_for_file(args.go)
    results = asyncio.run(runtime.recover())
    print(json.dumps({"finished": sorted(r.run_id for r in results if r.status.finished),
                      "owner": runtime.owner}))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
