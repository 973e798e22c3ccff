"""A tiny payments provider kept in its own SQLite file, for the crash demo.

It behaves like real providers do: a refund request carrying an idempotency key it has seen
returns the stored refund instead of moving money again; without a key every request is a new
refund. Notes and emails are recorded with their keys so the demo can count effects.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["Bank"]


class Bank:
    """The external system: separate from tether's journal, as a real provider would be."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS refunds (
                refund_id TEXT PRIMARY KEY, idempotency_key TEXT UNIQUE,
                order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS notes (
                note_key TEXT PRIMARY KEY, order_id TEXT NOT NULL, text TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS emails (
                email_id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT UNIQUE,
                recipient TEXT NOT NULL, subject TEXT NOT NULL);
            """
        )

    def refund(
        self, order_id: str, amount_cents: int, idempotency_key: str | None
    ) -> dict[str, Any]:
        if idempotency_key is not None:
            row = self._db.execute(
                "SELECT refund_id, order_id, amount_cents FROM refunds WHERE idempotency_key=?",
                (idempotency_key,),
            ).fetchone()
            if row is not None:
                return {"refund_id": row[0], "order_id": row[1], "amount_cents": row[2],
                        "replayed": True}
        count = self._db.execute("SELECT count(*) FROM refunds").fetchone()[0]
        refund_id = f"re_{count + 1:04d}"
        self._db.execute("INSERT INTO refunds VALUES (?, ?, ?, ?)",
                         (refund_id, idempotency_key, order_id, amount_cents))
        return {"refund_id": refund_id, "order_id": order_id, "amount_cents": amount_cents,
                "replayed": False}

    def add_note(self, note_key: str, order_id: str, text: str) -> dict[str, Any]:
        self._db.execute("INSERT OR IGNORE INTO notes VALUES (?, ?, ?)",
                         (note_key, order_id, text))
        return {"note_key": note_key}

    def find_note(self, note_key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT note_key FROM notes WHERE note_key=?",
                               (note_key,)).fetchone()
        return None if row is None else {"note_key": row[0]}

    def send_email(
        self, recipient: str, subject: str, idempotency_key: str | None
    ) -> dict[str, Any]:
        if idempotency_key is not None:
            row = self._db.execute("SELECT email_id FROM emails WHERE idempotency_key=?",
                                   (idempotency_key,)).fetchone()
            if row is not None:
                return {"email_id": row[0]}
        cur = self._db.execute(
            "INSERT INTO emails (idempotency_key, recipient, subject) VALUES (?, ?, ?)",
            (idempotency_key, recipient, subject))
        return {"email_id": cur.lastrowid}

    def counts(self, order_id: str) -> dict[str, int]:
        """How many refunds, notes and emails exist for an order."""
        refunds = self._db.execute("SELECT count(*) FROM refunds WHERE order_id=?",
                                   (order_id,)).fetchone()[0]
        notes = self._db.execute("SELECT count(*) FROM notes WHERE order_id=?",
                                 (order_id,)).fetchone()[0]
        emails = self._db.execute("SELECT count(*) FROM emails").fetchone()[0]
        return {"refunds": refunds, "notes": notes, "emails": emails}

    def close(self) -> None:
        self._db.close()
