"""What an HTTP error answer from a model provider means, shared by the adapters.

Which answers are worth retrying (the rule :func:`status_error` applies):

* 429 is throttling: ``RateLimited`` (billing 429s excepted: ``ModelError``);
* 408, 409, and 502, 503, 504, 529 (a gateway, an overloaded or unavailable server) say nothing
  about the request: ``ModelUnavailable``, retried by the policy;
* other 4xx answer a request the server will not take (malformed, unknown model …):
  ``ModelError`` (``model_rejected``), never retried;
* 500 and the other 5xx mean the server failed on *this* request. OpenAI asks for a retry
  after a 500, so the first one is ``ModelUnavailable``; but servers also answer malformed
  requests with a 500 (llama-cpp-python does for a request its validation refuses), which
  fails the same way every time. So a 5xx is ``ModelError`` at once when its answer says the
  request is invalid, when it is a 501 (not implemented), or when the same request already
  got one from the same model (see :class:`ServerFailures`): one retry, not the policy's
  four attempts.

>>> retry_after_s({"retry-after": "20"})
20.0
"""

from __future__ import annotations

import email.utils
import math
from collections import OrderedDict
from collections.abc import Mapping

from tether.errors import (
    AuthExpired,
    ContextOverflow,
    ModelError,
    ModelUnavailable,
    RateLimited,
    TetherError,
)

__all__ = ["ServerFailures", "retry_after_s", "status_error"]

# 5xx answers from a gateway or an overloaded, unavailable or slow server: an outage.
_OUTAGES = frozenset({502, 503, 504, 529})
# What a 5xx answer says when the request, not the server, is at fault.
_REJECTION_PHRASES = ("validation error", "invalid_request", "invalid request")


def status_error(status: int, headers: Mapping[str, str], code: str, detail: str, name: str,
                 *, billing: bool, overflow: bool, repeated: bool = False) -> TetherError:
    """The tether error for an HTTP error answer: a pure function of what the server said
    (and whether it said so before to the same request); the rule is in the module docstring.

    ``billing`` and ``overflow`` are the provider-specific readings of the answer: an account
    out of credit (never retried) and a request too large for the context window.
    ``repeated``: the same request already got a 5xx that was not an outage.
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
    if status >= 500 and status not in _OUTAGES:
        rejects = any(p in f"{code} {detail}".lower() for p in _REJECTION_PHRASES)
        if repeated or rejects or status == 501:
            why = ("failed again on the same request" if repeated and not rejects
                   else "cannot process the request")
            return ModelError(f"model {name!r} {why} ({said}); the request, not an outage, is "
                              "at fault, so retrying it cannot help", model=name,
                              status=status)
    if status in (408, 409) or status >= 500:
        return ModelUnavailable(f"model {name!r} is unavailable ({said}); worth retrying later",
                                model=name, status=status)
    return ModelError(f"model {name!r} rejected the request ({said})", model=name, status=status)


class ServerFailures:
    """The requests (by key, e.g. :meth:`ModelRequest.digest`) a model's server last failed
    on with a 5xx that was not an outage, so a repeat can be told from a passing failure.

    Bounded (the oldest key is forgotten first); a success of the same request forgets it.

    >>> seen = ServerFailures()
    >>> seen.note("k", 500), seen.repeated("k")
    (None, True)
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def repeated(self, key: str) -> bool:
        return key in self._keys

    def note(self, key: str, status: int | None) -> None:
        """Remember ``key`` after a 5xx answer that was no outage; forget it after anything
        else (``None``: it succeeded)."""
        if status is not None and status >= 500 and status not in _OUTAGES:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        else:
            self._keys.pop(key, None)


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
