"""Instants: epoch seconds on the virtual clock, shown to agents as UTC ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_datetime", "as_epoch", "iso"]


def as_datetime(epoch: float) -> datetime:
    """The aware UTC datetime of ``epoch``."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def as_epoch(value: datetime | str | float) -> float:
    """Epoch seconds of a datetime, an ISO 8601 string or a number; naive times are UTC.

    >>> as_epoch("2026-01-01T00:00:00Z")
    1767225600.0
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, an ISO 8601 string or epoch seconds, "
                        f"got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def iso(epoch: float) -> str:
    """``2026-01-05T10:00:00Z``: the form used in effect keys."""
    return as_datetime(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
