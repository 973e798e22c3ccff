"""A refund workflow in a real process, so a test can SIGKILL it anywhere in the write protocol.

    python tests/crash/app.py --store runs.db --external ext.db --kill-at refund:after_call
    python tests/crash/app.py --store runs.db --external ext.db --recover

``--kill-at POS:POINT`` kills this process with SIGKILL (no cleanup, no flush) when the durable
call at POS — a position number or a call name — reaches POINT: a probe point of the runtime
(``before_intent``, ``after_intent``, ``after_call``, ``after_result``, ``after_step``), or
``in_handler`` / ``in_step``, inside a read handler or step function once it has done its work
(reads report no probe points, so the kill has to come from inside).

The "external system" is its own SQLite file (``--external``), modelled on real providers:

* idempotent endpoints (holds, refunds, tickets, releases) deduplicate by idempotency key the
  way Stripe does: the first request's response is stored under its key and replayed after;
* the reconcilable endpoint (return labels) does not deduplicate but records the key, so
  ``find_label(key)`` can tell afterwards whether a label was created;
* the unsafe endpoint (email) inserts a row on every call.

Every effect row carries its key, and every request is logged in ``requests`` with what the
provider did (``applied``, ``replayed``, ``found``, ``not_found``, ``read``), so a test can count
effects per business key instead of trusting the run's status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from tether import (
    ProbePoint,
    RunContext,
    Runtime,
    SQLiteStore,
    SystemClock,
    Tool,
    ToolContext,
    Workflow,
    tool,
    workflow,
)
from tether.runtime.context import internals

__all__ = [
    "EFFECT_TABLES",
    "ORDER_ID",
    "RUN_ID",
    "External",
    "Killer",
    "build_workflow",
    "main",
]

RUN_ID = "run-refund-A1001"
ORDER_ID = "A-1001"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, email TEXT NOT NULL,"
    " sku TEXT NOT NULL, amount_cents INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS idempotency_keys (key TEXT PRIMARY KEY, endpoint TEXT NOT NULL,"
    " response TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL,"
    " key TEXT NOT NULL, outcome TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS holds (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " order_id TEXT NOT NULL, sku TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS releases (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " hold_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS refunds (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS labels (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " order_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS emails (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " recipient TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " order_id TEXT NOT NULL, status TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS step_runs (id INTEGER PRIMARY KEY, key TEXT NOT NULL)",
)

#: Tables holding one row per effect the provider applied, each with the request's key.
EFFECT_TABLES = ("holds", "releases", "refunds", "labels", "emails", "tickets", "step_runs")


class External:
    """The provider side: one SQLite file, one short transaction per request."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.execute(
            "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)",
            (ORDER_ID, "ada@example.com", "SKU-RED-KETTLE", 4_999),
        )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _log(self, db: sqlite3.Connection, endpoint: str, key: str, outcome: str) -> None:
        db.execute("INSERT INTO requests (endpoint, key, outcome) VALUES (?, ?, ?)",
                   (endpoint, key, outcome))

    # -- a read --------------------------------------------------------------------------

    def get_order(self, order_id: str) -> dict[str, Any]:
        with self._tx() as db:
            row = db.execute("SELECT order_id, email, sku, amount_cents FROM orders "
                             "WHERE order_id=?", (order_id,)).fetchone()
            self._log(db, "orders.get", order_id, "read")
        if row is None:
            raise LookupError(f"no order {order_id!r}")
        return {"order_id": row[0], "email": row[1], "sku": row[2], "amount_cents": row[3]}

    # -- idempotent endpoints: deduplicate by key, replay the first response ----------------

    def _idempotent(self, endpoint: str, key: str,
                    apply: Callable[[sqlite3.Connection], dict[str, Any]]) -> dict[str, Any]:
        with self._tx() as db:
            row = db.execute("SELECT endpoint, response FROM idempotency_keys WHERE key=?",
                             (key,)).fetchone()
            if row is not None:
                if row[0] != endpoint:  # Stripe refuses a key reused for another request
                    raise ValueError(f"key {key!r} was used for {row[0]}, not {endpoint}")
                self._log(db, endpoint, key, "replayed")
                return dict(json.loads(row[1]))
            response = apply(db)
            db.execute("INSERT INTO idempotency_keys VALUES (?, ?, ?)",
                       (key, endpoint, json.dumps(response)))
            self._log(db, endpoint, key, "applied")
            return response

    def place_hold(self, key: str, order_id: str, sku: str) -> dict[str, Any]:
        def apply(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute("INSERT INTO holds (key, order_id, sku) VALUES (?, ?, ?)",
                             (key, order_id, sku))
            return {"hold_id": f"hold_{cur.lastrowid}", "sku": sku}
        return self._idempotent("holds.create", key, apply)

    def release_hold(self, key: str, hold_id: str) -> dict[str, Any]:
        def apply(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute("INSERT INTO releases (key, hold_id) VALUES (?, ?)", (key, hold_id))
            return {"release_id": f"rel_{cur.lastrowid}", "hold_id": hold_id}
        return self._idempotent("holds.release", key, apply)

    def create_refund(self, key: str, order_id: str, amount_cents: int) -> dict[str, Any]:
        def apply(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute("INSERT INTO refunds (key, order_id, amount_cents) VALUES (?, ?, ?)",
                             (key, order_id, amount_cents))
            return {"refund_id": f"re_{cur.lastrowid}", "amount_cents": amount_cents}
        return self._idempotent("refunds.create", key, apply)

    def close_ticket(self, key: str, order_id: str) -> dict[str, Any]:
        def apply(db: sqlite3.Connection) -> dict[str, Any]:
            cur = db.execute("INSERT INTO tickets (key, order_id, status) VALUES (?, ?, ?)",
                             (key, order_id, "closed"))
            return {"ticket_id": f"tk_{cur.lastrowid}", "status": "closed"}
        return self._idempotent("tickets.close", key, apply)

    # -- a reconcilable endpoint: no dedup, but the key can be looked up afterwards -------

    def create_label(self, key: str, order_id: str) -> dict[str, Any]:
        with self._tx() as db:
            cur = db.execute("INSERT INTO labels (key, order_id) VALUES (?, ?)", (key, order_id))
            self._log(db, "labels.create", key, "applied")
        return {"label_id": f"lbl_{cur.lastrowid}"}

    def find_label(self, key: str) -> dict[str, Any] | None:
        with self._tx() as db:
            row = db.execute("SELECT id FROM labels WHERE key=? ORDER BY id", (key,)).fetchone()
            self._log(db, "labels.find", key, "not_found" if row is None else "found")
        return None if row is None else {"label_id": f"lbl_{row[0]}"}

    # -- an unsafe endpoint: every call is a new effect ---------------------------------

    def send_email(self, key: str, recipient: str, body: str) -> dict[str, Any]:
        with self._tx() as db:
            cur = db.execute("INSERT INTO emails (key, recipient, body) VALUES (?, ?, ?)",
                             (key, recipient, body))
            self._log(db, "emails.send", key, "applied")
        return {"message_id": f"msg_{cur.lastrowid}"}

    # -- not a provider: how often a step function really ran ---------------------------

    def record_step(self, name: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO step_runs (key) VALUES (?)", (name,))

    # -- what the test reads ------------------------------------------------------------

    def effects(self, table: str) -> dict[str, int]:
        """Effect rows per key in ``table``."""
        if table not in EFFECT_TABLES:
            raise ValueError(f"unknown effect table {table!r}")
        rows = self._db.execute(f"SELECT key, COUNT(*) FROM {table} GROUP BY key").fetchall()
        return {str(k): int(n) for k, n in rows}

    def outcomes(self, endpoint: str) -> list[str]:
        """What the provider did for each request to ``endpoint``, in order."""
        rows = self._db.execute("SELECT outcome FROM requests WHERE endpoint=? ORDER BY id",
                                (endpoint,)).fetchall()
        return [str(r[0]) for r in rows]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, to compare before and after."""
        names = [r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {n: self._db.execute(f"SELECT * FROM {n} ORDER BY 1").fetchall() for n in names}


class Killer:
    """SIGKILLs this process when the call at ``target`` (a position or a name) hits ``point``."""

    def __init__(self, spec: str | None = None) -> None:
        self.target: str | None = None
        self.point: str | None = None
        if spec:
            self.target, sep, self.point = spec.rpartition(":")
            if not sep or not self.target or not self.point:
                raise SystemExit(f"--kill-at wants POS:POINT, got {spec!r}")

    def __call__(self, where: ProbePoint) -> None:
        self.maybe_kill(where.position, where.name, where.point)

    def maybe_kill(self, position: int, name: str, point: str) -> None:
        if point == self.point and self.target in (str(position), name):
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


# -- the workflow -----------------------------------------------------------------------


class OrderRef(BaseModel):
    order_id: str


class Order(BaseModel):
    order_id: str
    email: str
    sku: str
    amount_cents: int


class Plan(BaseModel):
    amount_cents: int
    restock_sku: str


class HoldArgs(BaseModel):
    order_id: str
    sku: str


class Hold(BaseModel):
    hold_id: str
    sku: str


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


class Refund(BaseModel):
    refund_id: str
    amount_cents: int


class Label(BaseModel):
    label_id: str


class EmailArgs(BaseModel):
    order_id: str
    to: str
    body: str


class Email(BaseModel):
    message_id: str


class Ticket(BaseModel):
    ticket_id: str
    status: str


def build_tools(ext: External, killer: Killer) -> dict[str, Tool[Any, Any]]:
    """The six calls of the workflow's world, as tools bound to ``ext``."""

    @tool(effect="read")
    def lookup_order(tc: ToolContext, args: OrderRef) -> Order:
        """Read an order."""
        order = Order.model_validate(ext.get_order(args.order_id))
        killer.maybe_kill(tc.position, tc.tool, "in_handler")
        return order

    def release_stock(tc: ToolContext, args: HoldArgs, result: Hold) -> dict[str, Any]:
        return ext.release_hold(tc.idempotency_key, result.hold_id)

    @tool(effect="idempotent", key=lambda a: f"hold:{a.order_id}", compensate=release_stock)
    def hold_stock(tc: ToolContext, args: HoldArgs) -> Hold:
        """Hold the returned item's stock for restocking; undone by releasing the hold."""
        return Hold.model_validate(ext.place_hold(tc.idempotency_key, args.order_id, args.sku))

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> Refund:
        """Refund an order (the provider deduplicates by key)."""
        return Refund.model_validate(
            ext.create_refund(tc.idempotency_key, args.order_id, args.amount_cents))

    def find_label(tc: ToolContext, key: str) -> Label | None:
        found = ext.find_label(key)
        return None if found is None else Label.model_validate(found)

    @tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find_label)
    def return_label(tc: ToolContext, args: OrderRef) -> Label:
        """Create a return shipping label (looked up by key after an unknown outcome)."""
        return Label.model_validate(ext.create_label(tc.idempotency_key, args.order_id))

    @tool(effect="unsafe", key=lambda a: f"email:{a.order_id}")
    def notify_customer(tc: ToolContext, args: EmailArgs) -> Email:
        """Email the customer (every call sends a new email)."""
        return Email.model_validate(ext.send_email(tc.idempotency_key, args.to, args.body))

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> Ticket:
        """Close the support ticket."""
        return Ticket.model_validate(ext.close_ticket(tc.idempotency_key, args.order_id))

    tools = [lookup_order, hold_stock, refund, return_label, notify_customer, close_ticket]
    return {t.name: t for t in tools}


def build_workflow(ext: External, killer: Killer | None = None) -> Workflow:
    """The refund workflow: read, step, then five writes of every effect class."""
    killer = killer or Killer()
    tools = build_tools(ext, killer)

    @workflow(name="refund_order")
    async def refund_order(ctx: RunContext, order_id: str) -> dict[str, str]:
        order = await ctx.call_tool(tools["lookup_order"], {"order_id": order_id})

        def plan() -> Plan:
            ext.record_step("plan_refund")
            killer.maybe_kill(internals(ctx).position - 1, "plan_refund", "in_step")
            return Plan(amount_cents=order.amount_cents, restock_sku=order.sku)

        planned = await ctx.step("plan_refund", plan, result_type=Plan)
        hold = await ctx.call_tool(tools["hold_stock"],
                                   {"order_id": order_id, "sku": planned.restock_sku})
        refunded = await ctx.call_tool(tools["refund"], {
            "order_id": order_id, "amount_cents": planned.amount_cents})
        label = await ctx.call_tool(tools["return_label"], {"order_id": order_id})
        await ctx.call_tool(tools["notify_customer"], {
            "order_id": order_id, "to": order.email,
            "body": f"Refunded {refunded.amount_cents} cents; label {label.label_id}."})
        ticket = await ctx.call_tool(tools["close_ticket"], {"order_id": order_id})
        return {"hold": hold.hold_id, "refund": refunded.refund_id, "label": label.label_id,
                "ticket": ticket.ticket_id}

    return refund_order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="the tether journal (SQLite file)")
    parser.add_argument("--external", required=True, help="the external system (SQLite file)")
    parser.add_argument("--kill-at", default=None, metavar="POS:POINT")
    parser.add_argument("--run-id", default=RUN_ID)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--recover", action="store_true", help="resume every unfinished run")
    mode.add_argument("--resume", metavar="RUN_ID", help="resume one run, finished or not")
    args = parser.parse_args(argv)

    ext = External(args.external)
    killer = Killer(args.kill_at)
    store = SQLiteStore(args.store)
    wf = build_workflow(ext, killer)
    # Every invocation is the same worker restarting (one owner name), so it takes back at
    # once the run the killed process held instead of waiting for that lease to expire.
    runtime = Runtime(store, clock=SystemClock(), workflows=[wf], probe=killer,
                      owner="crash-app-worker")
    if args.recover:
        results = asyncio.run(runtime.recover())
    elif args.resume:
        results = [asyncio.run(runtime.resume(args.resume))]
    else:
        results = [asyncio.run(runtime.start(wf, ORDER_ID, run_id=args.run_id))]
    summary = {
        "results": [{"run_id": r.run_id, "status": r.status.value, "reason": r.reason}
                    for r in results],
        "statuses": {info.run_id: info.status.value for info in store.list_runs()},
    }
    print(json.dumps(summary, sort_keys=True))
    store.close()
    ext.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
