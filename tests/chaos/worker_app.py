"""The workflow the worker chaos tests run, and the external system its tools write to.

Workers load the workflow by import path, the way users name theirs::

    python -m tests.chaos.worker_app create ext.db        # the external system's tables
    TETHER_CHAOS_EXTERNAL=ext.db tether worker --store runs.db \\
        --workflow tests.chaos.worker_app:WF --park-timers-after-s 0.5
    tether runs start tests.chaos.worker_app:WF --store runs.db --input '"o-0001"'

``WF`` (workflow ``chaos_order``, input an order id such as ``"o-0042"``) makes one call of each
kind a durable workflow makes:

1. ``lookup_order`` — a read (the provider also answers whether the order is risky);
2. ``hold_stock`` — an idempotent write (the provider deduplicates by key) with a saga
   compensation, ``release_stock`` (idempotent as well);
3. ``ctx.sleep(TIMER_S)`` — a durable timer, long enough for a worker to park it;
4. a risky order is declined here: the workflow raises :class:`Declined`, the run fails and its
   hold is released by compensation;
5. ``charge_card`` — an idempotent write;
6. ``return_label`` — a reconcilable write (no deduplication; ``find_label`` looks the key up);
7. ``notify_customer`` — an unsafe write (every call sends a new email).

The external system lives in its own SQLite file, or in the schema ``chaos_ext`` of a PostgreSQL
database, named by ``TETHER_CHAOS_EXTERNAL`` (a path or a ``postgresql://`` DSN). Every handler
first commits one ``invocations`` row (endpoint, key, run, process) and only then does its work,
so a handler killed half way is still counted: the tests count *invocations*, not only effects.
Every request is also logged in ``requests`` with what the provider did (``applied``,
``replayed``, ``found``, ``not_found``, ``read``), and every effect row carries its key.
``TETHER_CHAOS_LATENCY_S`` (default 0.01) is the provider's round trip, slept on each side of the
effect, so a worker killed at random is often killed inside the write protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from tether import RunContext, ToolContext, tool, workflow

__all__ = [
    "DECLINE_EVERY",
    "EFFECT_TABLES",
    "WF",
    "Declined",
    "External",
    "order_ids",
    "risky",
]

#: Every DECLINE_EVERY-th order (index 3, 13, 23 …) is risky: its run fails and is compensated.
DECLINE_EVERY = 10

#: Tables holding one row per effect the provider applied, each with the request's key.
EFFECT_TABLES = ("holds", "releases", "charges", "labels", "emails")

_PG_SCHEMA = "chaos_ext"

_TABLES = (
    "invocations (id {id}, endpoint TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,"
    " pid INTEGER NOT NULL)",
    "requests (id {id}, endpoint TEXT NOT NULL, key TEXT NOT NULL, outcome TEXT NOT NULL)",
    "idempotency_keys (key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, response TEXT NOT NULL)",
    "holds (id {id}, key TEXT NOT NULL, order_id TEXT NOT NULL, sku TEXT NOT NULL)",
    "releases (id {id}, key TEXT NOT NULL, hold_id TEXT NOT NULL)",
    "charges (id {id}, key TEXT NOT NULL, order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL)",
    "labels (id {id}, key TEXT NOT NULL, order_id TEXT NOT NULL)",
    "emails (id {id}, key TEXT NOT NULL, order_id TEXT NOT NULL, body TEXT NOT NULL)",
)


def order_ids(count: int) -> list[str]:
    """The order ids of a test with ``count`` runs."""
    return [f"o-{n:04d}" for n in range(count)]


def risky(order_id: str) -> bool:
    """Whether the provider calls ``order_id`` risky (its run is declined and compensated)."""
    return int(order_id.removeprefix("o-")) % DECLINE_EVERY == 3


class External:
    """The provider side: a SQLite file or a PostgreSQL schema, one short transaction per
    request. One connection per process, guarded by a lock (handlers run on the event loop's
    thread; the lock only matters if one ever runs in another)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._lock = threading.Lock()
        self._db: Any
        if self.postgres:
            import psycopg

            self._db = psycopg.connect(url, autocommit=True)
            self._prefix = f"{_PG_SCHEMA}."
        else:
            self._db = sqlite3.connect(url, isolation_level=None, timeout=30.0,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._prefix = ""

    def create(self) -> None:
        """Create the tables (once, before any worker starts: concurrent ``CREATE TABLE IF NOT
        EXISTS`` can fail on PostgreSQL)."""
        ident = "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY"
        with self._lock:
            if self.postgres:
                self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {_PG_SCHEMA}")
            for table in _TABLES:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {self._prefix}"
                                 + table.replace("{id}", ident))

    def close(self) -> None:
        self._db.close()

    # -- plumbing -------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        statement = statement.replace("{s}", self._prefix)
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def _tx(self, lock_key: str | None = None) -> Iterator[Callable[..., Any]]:
        """One transaction; yields ``run(sql, *params) -> cursor``. ``lock_key`` serializes
        transactions on one key (SQLite's BEGIN IMMEDIATE serializes them all anyway)."""
        with self._lock:
            if self.postgres:
                with self._db.transaction():
                    def run(statement: str, *params: Any) -> Any:
                        return self._db.execute(self._sql(statement), params)
                    if lock_key is not None:
                        run("SELECT pg_advisory_xact_lock(hashtext(?))", lock_key)
                    yield run
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield lambda statement, *params: self._db.execute(self._sql(statement), params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def invoked(self, endpoint: str, key: str, run_id: str) -> None:
        """Count one handler invocation, committed before the handler does anything else."""
        with self._tx() as run:
            run("INSERT INTO {s}invocations (endpoint, key, run_id, pid) VALUES (?, ?, ?, ?)",
                endpoint, key, run_id, os.getpid())

    def _log(self, run: Callable[..., Any], endpoint: str, key: str, outcome: str) -> None:
        run("INSERT INTO {s}requests (endpoint, key, outcome) VALUES (?, ?, ?)",
            endpoint, key, outcome)

    # -- a read ---------------------------------------------------------------------------

    def get_order(self, order_id: str) -> dict[str, Any]:
        with self._tx() as run:
            self._log(run, "orders.get", order_id, "read")
        number = int(order_id.removeprefix("o-"))
        return {"order_id": order_id, "email": f"{order_id}@example.com",
                "sku": f"SKU-{number % 7}", "amount_cents": 1_000 + number,
                "risk": "high" if risky(order_id) else "low"}

    # -- idempotent endpoints: deduplicate by key, replay the first response --------------

    def _idempotent(self, endpoint: str, key: str,
                    apply: Callable[[Callable[..., Any]], dict[str, Any]]) -> dict[str, Any]:
        with self._tx(lock_key=key) as run:
            row = run("SELECT endpoint, response FROM {s}idempotency_keys WHERE key=?",
                      key).fetchone()
            if row is not None:
                if row[0] != endpoint:  # Stripe refuses a key reused for another request
                    raise ValueError(f"key {key!r} was used for {row[0]}, not {endpoint}")
                self._log(run, endpoint, key, "replayed")
                return dict(json.loads(row[1]))
            response = apply(run)
            run("INSERT INTO {s}idempotency_keys (key, endpoint, response) VALUES (?, ?, ?)",
                key, endpoint, json.dumps(response))
            self._log(run, endpoint, key, "applied")
            return response

    def place_hold(self, key: str, order_id: str, sku: str) -> dict[str, Any]:
        def apply(run: Callable[..., Any]) -> dict[str, Any]:
            (row_id,) = run("INSERT INTO {s}holds (key, order_id, sku) VALUES (?, ?, ?) "
                            "RETURNING id", key, order_id, sku).fetchone()
            return {"hold_id": f"hold_{row_id}", "sku": sku}
        return self._idempotent("holds.create", key, apply)

    def release_hold(self, key: str, hold_id: str) -> dict[str, Any]:
        def apply(run: Callable[..., Any]) -> dict[str, Any]:
            (row_id,) = run("INSERT INTO {s}releases (key, hold_id) VALUES (?, ?) RETURNING id",
                            key, hold_id).fetchone()
            return {"release_id": f"rel_{row_id}", "hold_id": hold_id}
        return self._idempotent("holds.release", key, apply)

    def charge(self, key: str, order_id: str, amount_cents: int) -> dict[str, Any]:
        def apply(run: Callable[..., Any]) -> dict[str, Any]:
            (row_id,) = run("INSERT INTO {s}charges (key, order_id, amount_cents) VALUES "
                            "(?, ?, ?) RETURNING id", key, order_id, amount_cents).fetchone()
            return {"charge_id": f"ch_{row_id}", "amount_cents": amount_cents}
        return self._idempotent("charges.create", key, apply)

    # -- a reconcilable endpoint: no dedup, but the key can be looked up afterwards -------

    def create_label(self, key: str, order_id: str) -> dict[str, Any]:
        with self._tx() as run:
            (row_id,) = run("INSERT INTO {s}labels (key, order_id) VALUES (?, ?) RETURNING id",
                            key, order_id).fetchone()
            self._log(run, "labels.create", key, "applied")
        return {"label_id": f"lbl_{row_id}"}

    def find_label(self, key: str) -> dict[str, Any] | None:
        with self._tx() as run:
            row = run("SELECT id FROM {s}labels WHERE key=? ORDER BY id", key).fetchone()
            self._log(run, "labels.find", key, "not_found" if row is None else "found")
        return None if row is None else {"label_id": f"lbl_{row[0]}"}

    # -- an unsafe endpoint: every call is a new effect -----------------------------------

    def send_email(self, key: str, order_id: str, body: str) -> dict[str, Any]:
        with self._tx() as run:
            (row_id,) = run("INSERT INTO {s}emails (key, order_id, body) VALUES (?, ?, ?) "
                            "RETURNING id", key, order_id, body).fetchone()
            self._log(run, "emails.send", key, "applied")
        return {"message_id": f"msg_{row_id}"}

    # -- what the tests read --------------------------------------------------------------

    def effects(self, table: str) -> dict[str, int]:
        """Effect rows per key in ``table``."""
        if table not in EFFECT_TABLES:
            raise ValueError(f"unknown effect table {table!r}")
        with self._tx() as run:
            rows = run(f"SELECT key, COUNT(*) FROM {{s}}{table} GROUP BY key").fetchall()
        return {str(k): int(n) for k, n in rows}

    def history(self) -> dict[str, list[tuple[str, str]]]:
        """Per key, in order, every invocation (``("invoked", endpoint)``) and every request
        (``(outcome, endpoint)``), merged by commit order within each log."""
        with self._tx() as run:
            calls = run("SELECT key, endpoint FROM {s}invocations ORDER BY id").fetchall()
            requests = run("SELECT key, endpoint, outcome FROM {s}requests "
                           "ORDER BY id").fetchall()
        per_key: dict[str, list[tuple[str, str]]] = {}
        for key, endpoint in calls:
            per_key.setdefault(str(key), []).append(("invoked", str(endpoint)))
        for key, endpoint, outcome in requests:
            per_key.setdefault(str(key), []).append((str(outcome), str(endpoint)))
        return per_key

    def invocations(self) -> list[tuple[str, str, str, int]]:
        """Every handler invocation as ``(endpoint, key, run_id, pid)``, in commit order."""
        with self._tx() as run:
            rows = run("SELECT endpoint, key, run_id, pid FROM {s}invocations "
                       "ORDER BY id").fetchall()
        return [(str(e), str(k), str(r), int(p)) for e, k, r, p in rows]

    def requests(self) -> list[tuple[str, str, str]]:
        """Every request as ``(endpoint, key, outcome)``, in commit order."""
        with self._tx() as run:
            rows = run("SELECT endpoint, key, outcome FROM {s}requests ORDER BY id").fetchall()
        return [(str(e), str(k), str(o)) for e, k, o in rows]


class _Provider:
    """The external system this process's handlers call, opened on first use from
    ``TETHER_CHAOS_EXTERNAL`` (a worker imports the workflow before it runs anything)."""

    def __init__(self) -> None:
        self._external: External | None = None
        self._lock = threading.Lock()

    def __call__(self) -> External:
        url = os.environ.get("TETHER_CHAOS_EXTERNAL")
        if not url:
            raise RuntimeError("set TETHER_CHAOS_EXTERNAL to the external system's SQLite "
                               "file or postgresql:// DSN")
        with self._lock:
            if self._external is None or self._external.url != url:
                # A test process may point the workflow at another system between tests.
                if self._external is not None:
                    self._external.close()
                self._external = External(url)
            return self._external


_provider = _Provider()


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


async def _round_trip() -> None:
    """The provider's latency (real time: this is the outside world, not tether's code)."""
    latency_s = _env_float("TETHER_CHAOS_LATENCY_S", 0.01)
    if latency_s > 0:
        await asyncio.sleep(latency_s)


async def _call(tc: ToolContext, endpoint: str, key: str,
                request: Callable[[External], dict[str, Any]]) -> dict[str, Any]:
    ext = _provider()
    ext.invoked(endpoint, key, tc.run_id)
    await _round_trip()
    response = request(ext)
    await _round_trip()
    return response


class Declined(Exception):
    """The provider called the order risky; the run fails and its hold is released."""


class OrderRef(BaseModel):
    order_id: str


class Order(BaseModel):
    order_id: str
    email: str
    sku: str
    amount_cents: int
    risk: str


class HoldArgs(BaseModel):
    order_id: str
    sku: str


class Hold(BaseModel):
    hold_id: str
    sku: str


class ChargeArgs(BaseModel):
    order_id: str
    amount_cents: int


class Charge(BaseModel):
    charge_id: str
    amount_cents: int


class Label(BaseModel):
    label_id: str


class EmailArgs(BaseModel):
    order_id: str
    to: str
    body: str


class Email(BaseModel):
    message_id: str


@tool(effect="read")
async def lookup_order(tc: ToolContext, args: OrderRef) -> Order:
    """Read an order and its risk verdict."""
    found = await _call(tc, "orders.get", args.order_id,
                        lambda ext: ext.get_order(args.order_id))
    return Order.model_validate(found)


async def release_stock(tc: ToolContext, args: HoldArgs, result: Hold) -> dict[str, Any]:
    """Undo a hold (the saga's compensation); keyed ``hold:…:undo``, deduplicated."""
    return await _call(tc, "holds.release", tc.idempotency_key,
                       lambda ext: ext.release_hold(tc.idempotency_key, result.hold_id))


@tool(effect="idempotent", key=lambda a: f"hold:{a.order_id}", compensate=release_stock)
async def hold_stock(tc: ToolContext, args: HoldArgs) -> Hold:
    """Hold the order's stock; undone by releasing the hold if the run fails."""
    placed = await _call(tc, "holds.create", tc.idempotency_key,
                         lambda ext: ext.place_hold(tc.idempotency_key, args.order_id,
                                                    args.sku))
    return Hold.model_validate(placed)


@tool(effect="idempotent", key=lambda a: f"charge:{a.order_id}")
async def charge_card(tc: ToolContext, args: ChargeArgs) -> Charge:
    """Charge the order (the provider deduplicates by key)."""
    charged = await _call(tc, "charges.create", tc.idempotency_key,
                          lambda ext: ext.charge(tc.idempotency_key, args.order_id,
                                                 args.amount_cents))
    return Charge.model_validate(charged)


async def find_label(tc: ToolContext, key: str) -> Label | None:
    """Look a label up by key after an unknown outcome."""
    found = await _call(tc, "labels.find", key, lambda ext: ext.find_label(key) or {})
    return Label.model_validate(found) if found else None


@tool(effect="reconcilable", key=lambda a: f"label:{a.order_id}", reconcile=find_label)
async def return_label(tc: ToolContext, args: OrderRef) -> Label:
    """Create a shipping label (not deduplicated; looked up by key afterwards)."""
    created = await _call(tc, "labels.create", tc.idempotency_key,
                          lambda ext: ext.create_label(tc.idempotency_key, args.order_id))
    return Label.model_validate(created)


@tool(effect="unsafe", key=lambda a: f"email:{a.order_id}")
async def notify_customer(tc: ToolContext, args: EmailArgs) -> Email:
    """Email the customer (every call sends a new email)."""
    sent = await _call(tc, "emails.send", tc.idempotency_key,
                       lambda ext: ext.send_email(tc.idempotency_key, args.order_id, args.body))
    return Email.model_validate(sent)


@workflow(name="chaos_order")
async def chaos_order(ctx: RunContext, order_id: str) -> dict[str, str]:
    """Read, hold (compensated on failure), sleep durably, then charge, label and email."""
    order = await ctx.call_tool(lookup_order, {"order_id": order_id})
    hold = await ctx.call_tool(hold_stock, {"order_id": order_id, "sku": order.sku})
    await ctx.sleep(_env_float("TETHER_CHAOS_TIMER_S", 1.5))
    if order.risk == "high":
        raise Declined(f"order {order_id} is risky; its hold {hold.hold_id} is released")
    charge = await ctx.call_tool(charge_card, {"order_id": order_id,
                                               "amount_cents": order.amount_cents})
    label = await ctx.call_tool(return_label, {"order_id": order_id})
    email = await ctx.call_tool(notify_customer, {
        "order_id": order_id, "to": order.email,
        "body": f"Charged {charge.amount_cents} cents; label {label.label_id}."})
    return {"hold": hold.hold_id, "charge": charge.charge_id, "label": label.label_id,
            "email": email.message_id}


#: What ``tether worker --workflow tests.chaos.worker_app:WF`` loads.
WF = chaos_order


def main(argv: list[str] | None = None) -> int:
    """``create URL``: create the external system's tables (before any worker starts)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create the external system's tables")
    create.add_argument("url")
    args = parser.parse_args(argv)
    ext = External(args.url)
    ext.create()
    ext.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
