"""What an HTTP error answer from a model provider means, shared by the adapters.

>>> retry_after_s({"retry-after": "20"})
20.0
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping

from tether.errors import (
    AuthExpired,
    ContextOverflow,
    ModelError,
    ModelUnavailable,
    RateLimited,
    TetherError,
)

__all__ = ["retry_after_s", "status_error"]


def status_error(status: int, headers: Mapping[str, str], code: str, detail: str, name: str,
                 *, billing: bool, overflow: bool) -> TetherError:
    """The tether error for an HTTP error answer: a pure function of what the server said.

    ``billing`` and ``overflow`` are the provider-specific readings of the answer: an account
    out of credit (never retried) and a request too large for the context window.
    """
    said = f"HTTP {status}{' ' + code if code else ''}: {detail}"
    if billing:
        return ModelError(f"model {name!r} refused the call: the account is out of quota or "
                          f"over a spend limit ({said}); raise the limit", model=name,
                          status=status)
    if status == 429:
        wait_s = retry_after_s(headers)
        hint = f"; the provider asks to wait {wait_s:g}s" if wait_s is not None else ""
        return RateLimited(f"model {name!r} is rate limited ({said}){hint}", model=name,
                           retry_after_s=wait_s, status=status)
    if overflow:
        return ContextOverflow(f"model {name!r}: the request does not fit its context window "
                               f"({said}); shorten the conversation or the tool results",
                               model=name, status=status)
    if status in (401, 403):
        return AuthExpired(f"model {name!r} refused the credentials ({said}); check the API key "
                           "and its permissions", dependency=name)
    if status in (408, 409) or status >= 500:  # 529: overloaded
        return ModelUnavailable(f"model {name!r} is unavailable ({said}); worth retrying later",
                                model=name, status=status)
    return ModelError(f"model {name!r} rejected the request ({said})", model=name, status=status)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date; a date is measured from the response's own
    ``date`` header (the server's clock, so no local clock is read and no skew creeps in).
    Anything unparseable, negative or missing gives ``None``.

    >>> retry_after_s({"retry-after": "20"})
    20.0
    >>> retry_after_s({"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT",
    ...                "date": "Wed, 21 Oct 2026 07:28:00 GMT"})
    30.0
    """
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
        now = email.utils.parsedate_to_datetime(headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _non_negative(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
