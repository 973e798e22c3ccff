"""Which exceptions mean "the request may have been applied": the outcome of a failed call.

A tool handler that fails tells the runtime one of three things:

* ``ambiguous`` — the request may or may not have taken effect (it left, then the answer was
  lost). A write is resolved by its effect class (re-issue under the same key, reconcile, or
  escalate); a read is retried.
* ``transient`` — the request certainly did not take effect and may succeed later (the
  connection was never made, the server refused it before processing). It is retried under the
  same key.
* ``permanent`` — the call failed definitively; retrying cannot help.

tether's own :class:`~tether.errors.AmbiguousOutcome` and :class:`~tether.errors.TransientError`
say so explicitly. Foreign exceptions are recognised by **name**, walking the exception's MRO
and matching ``package.QualName`` (and the full ``module.QualName``), so the client libraries are
never imported. The defaults (any subclass matches too)::

    library            transient: nothing was sent     ambiguous: sent, answer lost     by status
    -----------------  ------------------------------  -------------------------------  -----------
    built-ins          ConnectionRefusedError,         TimeoutError, ConnectionError,
                       socket.gaierror                 CancelledError while the task is
                                                       not being cancelled
    httpx, httpx2,     ConnectTimeout, ConnectError,   ReadTimeout, WriteTimeout,       HTTPStatus-
    httpcore           PoolTimeout                     ReadError, WriteError,           Error
                                                       RemoteProtocolError,
                                                       TimeoutException, NetworkError
    requests,          ConnectTimeout,                 ReadTimeout, Timeout,            HTTPError
    urllib3            ConnectTimeoutError,            ChunkedEncodingError,
                       NewConnectionError; and a       ReadTimeoutError, ProtocolError;
                       ConnectionError/MaxRetryError   other ConnectionError and
                       wrapping one of those           MaxRetryError
    aiohttp            ClientConnectorError,           ServerDisconnectedError,         ClientRes-
                       ConnectionTimeoutError          ClientOSError,                   ponseError
                                                       ServerTimeoutError,
                                                       ClientPayloadError,
                                                       ClientConnectionError
    stripe             RateLimitError; and an          APIConnectionError; APIError     StripeError
                       APIConnectionError from one     without a status
                       of the transient errors above
    openai, anthropic  RateLimitError,                 APITimeoutError,                 APIStatus-
                       OverloadedError; and an         APIConnectionError;              Error
                       APIConnectionError from one     InternalServerError without
                       of the transient errors above   a status
    urllib, http       urllib.error.URLError           http.client.IncompleteRead,      urllib.
    (stdlib)           wrapping one of the above       BadStatusLine (and so            error.
                                                       RemoteDisconnected); other       HTTPError
                                                       URLError wrapping an error
    requests,                                          requests RetryError and          urllib3
    urllib3 retries                                    urllib3 MaxRetryError (retries   Response-
                                                       exhausted): by what they wrap    Error
    botocore (boto3)   ConnectTimeoutError,            ReadTimeoutError,                ClientError
                       EndpointConnectionError         ConnectionClosedError,
                                                       HTTPClientError, ConnectionError

**By status** (the most specific class found decides): 408, 425 and 429 are transient (the server
says it did not process the request; AWS throttling codes count as 429);
any 5xx is ambiguous — including 503, because gateways answer 503 when the upstream connection
resets *after* the request was forwarded (a provider known to send 503 only before processing
can say so with ``transient_on`` or ``classify_error``); other statuses are permanent.

urllib3's ``ResponseError`` names the status its retries gave up on only in its message
("too many 502 error responses"): that status decides (a 429 is transient); without one it is
ambiguous.

**Chains and groups.** Code often wraps the exception that tells: ``raise PaymentError(...)
from httpx.ReadTimeout(...)``, an ``ExceptionGroup`` from ``asyncio.TaskGroup``, a library's
own error raised while handling a timeout. Unless ``exc`` itself is a tether signal or is
named by a tool's declaration, every exception it carries is read too — ``__cause__``,
``__context__`` (even under ``from None``: hiding a timeout does not undo its request) and
the members of an exception group, recursively, cycles and repeats read once, at most 64 in
all (a longer chain is ambiguous, since what was not read may be a lost answer). The rule: if
any of them may have been applied, the outcome is **ambiguous**; else if any is permanent (a
4xx, or a tool's ``classify_error`` saying so), **permanent**; else if any is transient,
**transient**; else permanent. Under an exception the table or a declaration recognises, only
an exception it was raised *while handling* (an implicit ``__context__``) is read, not the
one it was translated from (``raise ConnectTimeout(...) from socket.timeout``): the library
has already said what that lower-level error meant.

A tool extends and overrides the defaults: ``classify_error(exc)`` (a callable returning
``"ambiguous"``, ``"transient"``, ``"permanent"`` or ``None`` for no opinion) is asked first, then
``ambiguous_on`` and ``transient_on`` (types, or dotted names such as
``"stripe.APIConnectionError"``; ambiguous wins when both match), then the defaults. What a
tool declares of the exception its handler raised wins over anything that exception carries:
the tool's author knows best.

>>> outcome_of(TimeoutError("read timed out")).value
'ambiguous'
>>> outcome_of(ConnectionRefusedError()).value
'transient'
>>> outcome_of(KeyError("id")).value
'permanent'
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from types import FrameType, TracebackType
from typing import TypeGuard

from tether.errors import AmbiguousOutcome, TransientError, UsageError

__all__ = [
    "ErrorClassifier",
    "ErrorOutcome",
    "cancel_requested",
    "check_declared",
    "outcome_of",
    "retry_after_s",
    "status_of",
    "type_name",
]


class ErrorOutcome(StrEnum):
    """What a failed call says about its request; see the table in this module's docstring."""

    AMBIGUOUS = "ambiguous"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


#: A tool's own reading of an exception: an outcome (or its name), or ``None`` for no opinion.
ErrorClassifier = Callable[[BaseException], "ErrorOutcome | str | None"]

_A, _T = ErrorOutcome.AMBIGUOUS, ErrorOutcome.TRANSIENT


class _ByStatus:
    """A table entry deciding by the HTTP status the exception carries; ``fallback`` is what to
    assume when it carries none (``None``: ask its base classes)."""

    __slots__ = ("fallback",)

    def __init__(self, fallback: ErrorOutcome | None) -> None:
        self.fallback = fallback


class _Wrapper:
    """A table entry for an exception that wraps the real cause (requests, urllib3, urllib): the
    cause decides when it is a connect-phase failure, else ``outcome``; ``bare`` is what to
    assume when it wraps no exception (``None``: no opinion)."""

    __slots__ = ("bare", "outcome")

    def __init__(self, outcome: ErrorOutcome, bare: ErrorOutcome | None = None) -> None:
        self.outcome = outcome
        self.bare = bare


class _StatusInMessage:
    """A table entry for urllib3's ``ResponseError`` ("too many 502 error responses"), which
    names the status its retries gave up on only in its message; ``fallback`` when it names
    none."""

    __slots__ = ("fallback",)

    def __init__(self, fallback: ErrorOutcome) -> None:
        self.fallback = fallback


_Rule = ErrorOutcome | _ByStatus | _Wrapper | _StatusInMessage
_STATUS_IN_MESSAGE = re.compile(r"too many (\d{3}) error responses")


def _family(packages: Iterable[str], rules: Mapping[str, _Rule]) -> dict[str, _Rule]:
    return {f"{package}.{name}": rule for package in packages for name, rule in rules.items()}


_DEFAULTS: dict[str, _Rule] = {
    # Only ever asked when the task is not being cancelled (see cancel_requested): then the
    # awaited client cancelled its own work, perhaps after the request left.
    "asyncio.CancelledError": _A,
    "builtins.ConnectionRefusedError": _T,
    "socket.gaierror": _T,
    "builtins.TimeoutError": _A,
    "builtins.ConnectionError": _A,
    **_family(("httpx", "httpx2", "httpcore"), {
        "ConnectTimeout": _T, "ConnectError": _T, "PoolTimeout": _T,
        "ReadTimeout": _A, "WriteTimeout": _A, "ReadError": _A, "WriteError": _A,
        "RemoteProtocolError": _A, "TimeoutException": _A, "NetworkError": _A,
        "HTTPStatusError": _ByStatus(None),
    }),
    # The standard library's own HTTP client: urlopen wraps an error of the connect or send
    # phase in URLError (refused: nothing sent), answers with a status in HTTPError, and lets
    # a broken response surface from http.client.
    "urllib.error.HTTPError": _ByStatus(None),
    "urllib.error.URLError": _Wrapper(_A, bare=None),
    "http.client.IncompleteRead": _A,
    "http.client.BadStatusLine": _A,
    **_family(("requests",), {
        "ConnectTimeout": _T, "ConnectionError": _Wrapper(_A, bare=_A), "ReadTimeout": _A,
        "Timeout": _A, "ChunkedEncodingError": _A, "HTTPError": _ByStatus(None),
        # Retries exhausted on a status (5xx: each may have been applied; 429: none was).
        "RetryError": _Wrapper(_A, bare=_A),
    }),
    **_family(("urllib3",), {
        "ConnectTimeoutError": _T, "NewConnectionError": _T,
        "MaxRetryError": _Wrapper(_A, bare=_A), "ReadTimeoutError": _A, "ProtocolError": _A,
        "TimeoutError": _A, "ResponseError": _StatusInMessage(_A),
    }),
    **_family(("aiohttp",), {
        "ClientConnectorError": _T, "ConnectionTimeoutError": _T,
        "ServerDisconnectedError": _A, "ClientOSError": _A, "ServerTimeoutError": _A,
        "ClientPayloadError": _A, "ClientConnectionError": _A,
        "ClientResponseError": _ByStatus(None),
    }),
    **_family(("stripe",), {
        "APIConnectionError": _Wrapper(_A, bare=_A), "RateLimitError": _T,
        "APIError": _ByStatus(_A), "StripeError": _ByStatus(None),
    }),
    **_family(("botocore",), {
        "ConnectTimeoutError": _T, "EndpointConnectionError": _T,
        "ReadTimeoutError": _A, "ConnectionClosedError": _A, "HTTPClientError": _A,
        "ConnectionError": _A, "ClientError": _ByStatus(None),
    }),
    **_family(("openai", "anthropic"), {
        "APITimeoutError": _A, "APIConnectionError": _Wrapper(_A, bare=_A), "RateLimitError": _T,
        "OverloadedError": _T, "InternalServerError": _ByStatus(_A),
        "APIStatusError": _ByStatus(None),
    }),
}

_TRANSIENT_STATUSES = frozenset({408, 425, 429})
# The error codes botocore's own retry handler treats as throttling.
_AWS_THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
})


def outcome_of(
    exc: BaseException,
    *,
    ambiguous_on: Iterable[type[BaseException] | str] = (),
    transient_on: Iterable[type[BaseException] | str] = (),
    classify_error: ErrorClassifier | None = None,
) -> ErrorOutcome:
    """What ``exc``, raised by a call, says about its request.

    tether's own signals decide first, then ``classify_error``, then the declared
    ``ambiguous_on`` / ``transient_on``; when none of them speaks of ``exc`` itself, ``exc``
    and the exceptions it carries are read together (see "Chains and groups" in this module's
    docstring), each by the same declarations and then the defaults of this module's table.
    """
    own = _declared_outcome(exc, ambiguous_on, transient_on, classify_error)
    if own is not None:
        return own  # the tool's own word on the exception it got stands over what it wraps
    # (Its own declarations were just asked: for it, only the table is left.)
    return _chain(exc, lambda link: _default(link) if link is exc else _link(
        link, ambiguous_on, transient_on, classify_error))


def _link(
    exc: BaseException,
    ambiguous_on: Iterable[type[BaseException] | str],
    transient_on: Iterable[type[BaseException] | str],
    classify_error: ErrorClassifier | None,
) -> ErrorOutcome | None:
    """One exception's own outcome (signals, the tool's declarations, the table), or ``None``
    when nothing recognises it."""
    own = _declared_outcome(exc, ambiguous_on, transient_on, classify_error)
    return own if own is not None else _default(exc)


def _declared_outcome(
    exc: BaseException,
    ambiguous_on: Iterable[type[BaseException] | str],
    transient_on: Iterable[type[BaseException] | str],
    classify_error: ErrorClassifier | None,
) -> ErrorOutcome | None:
    """What tether's signals or the tool's declarations say of ``exc`` itself, if anything."""
    if isinstance(exc, AmbiguousOutcome):
        return ErrorOutcome.AMBIGUOUS
    if isinstance(exc, TransientError):
        return ErrorOutcome.TRANSIENT
    if classify_error is not None:
        said = classify_error(exc)
        if said is not None:
            try:
                return ErrorOutcome(said)
            except ValueError:
                raise UsageError(
                    f"classify_error returned {said!r} for {type_name(exc)}; return "
                    "'ambiguous', 'transient', 'permanent', or None for no opinion"
                ) from exc
    names = _names(type(exc))
    if _declared(exc, names, ambiguous_on):
        return ErrorOutcome.AMBIGUOUS
    if _declared(exc, names, transient_on):
        return ErrorOutcome.TRANSIENT
    return None


#: How many exceptions of a chain (causes, contexts, group members) are read at most.
_MAX_LINKS = 64


def _chain(exc: BaseException,
           read: Callable[[BaseException], ErrorOutcome | None]) -> ErrorOutcome:
    """The outcome of ``exc`` read with what it wraps; see "Chains and groups" above."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    # The frames the failed call ran in: those ``exc`` passed through below the frame that
    # caught it. An implicit context caught anywhere else was being handled by the *caller*
    # when it made the call (a runtime looking a write up inside its ``except``): not part of
    # this call.
    inside = {id(frame) for frame in _frames(exc.__traceback__)[1:]}
    permanent = transient = False
    while stack and len(seen) < _MAX_LINKS:
        link = stack.pop()
        if id(link) in seen:
            continue  # a cycle, or an exception reached twice
        seen.add(id(link))
        if link is not exc:
            inside.update(id(frame) for frame in _frames(link.__traceback__))
        outcome = read(link)
        if outcome is ErrorOutcome.AMBIGUOUS:
            return outcome
        permanent = permanent or outcome is ErrorOutcome.PERMANENT
        transient = transient or outcome is ErrorOutcome.TRANSIENT
        stack.extend(reversed(_beneath(link, inside, recognised=outcome is not None)))
    if any(id(link) not in seen for link in stack):
        # More than _MAX_LINKS exceptions: what was not read may be a lost answer.
        return ErrorOutcome.AMBIGUOUS
    if permanent:
        return ErrorOutcome.PERMANENT
    return ErrorOutcome.TRANSIENT if transient else ErrorOutcome.PERMANENT


def _beneath(exc: BaseException, inside: set[int], *,
             recognised: bool) -> list[BaseException]:
    """The exceptions to read under ``exc``. A recognised exception already is its library's
    reading of what it was translated from (``raise ConnectTimeout from socket.timeout``), so
    only an exception it was raised *while handling* (an implicit ``__context__``: an earlier
    attempt inside the same call) is read; under an unrecognised one, everything it carries."""
    found: list[BaseException] = []
    if not recognised:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(exc.exceptions)
        if exc.__cause__ is not None:
            found.append(exc.__cause__)
    context = exc.__context__
    if context is None or not _caught_inside(context, inside):
        return found
    if not recognised or (exc.__cause__ is None and not exc.__suppress_context__):
        # Unrecognised: read even when hidden with ``raise ... from None`` (hiding a timeout
        # from the traceback does not make its request less likely to have been applied).
        found.append(context)
    return found


def _caught_inside(context: BaseException, inside: set[int]) -> bool:
    """Whether ``context`` was caught in a frame of the failed call (an exception built and
    never raised, as in tests, carries no frames: it is read)."""
    tb = context.__traceback__
    return tb is None or not inside or id(tb.tb_frame) in inside


def _frames(tb: TracebackType | None) -> list[FrameType]:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def cancel_requested() -> bool:
    """Whether the running task is being cancelled. A ``CancelledError`` then *is* the
    cancellation and must propagate; otherwise the awaited code raised it of its own accord (a
    client library's cancel scope, an aborted stream) and it is a failed call like any other."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: nobody can be cancelling us
        return False
    return task is not None and task.cancelling() > 0


def check_declared(where: str, declared: Iterable[type[BaseException] | str]) -> None:
    """Refuse a declaration that could never match: a name that is neither dotted
    (``package.Error``) nor a built-in exception, or a type that is not an exception."""
    for item in declared:
        if isinstance(item, str):
            builtin = getattr(builtins, item, None)
            if "." in item.strip(".") or (isinstance(builtin, type)
                                          and issubclass(builtin, BaseException)):
                continue
        elif isinstance(item, type) and issubclass(item, BaseException):
            continue
        raise UsageError(
            f"{where}: {item!r} names no exception; give an exception type or its dotted name "
            "as the library spells it (such as 'stripe.APIConnectionError' or 'TimeoutError')"
        )


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a client library's error carries, if any (``status_code``,
    ``http_status``, ``status``, its ``response``'s, or botocore's response metadata).
    AWS throttling errors, which AWS answers with a 400, count as 429."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping) and error.get("Code") in _AWS_THROTTLING:
            return 429
        meta = response.get("ResponseMetadata")
        value = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
        return value if _is_status(value) else None
    for holder in (exc, response):
        for attr in ("status_code", "http_status", "status"):
            value = getattr(holder, attr, None)
            if _is_status(value):
                return value
    return None


def _is_status(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def retry_after_s(exc: BaseException) -> float | None:
    """The ``Retry-After`` hint (in seconds) of a client library's error, if it carries one.
    HTTP dates are ignored: reading them would need the wall clock."""
    if isinstance(exc, TransientError):
        return exc.retry_after_s
    for holder in (exc, getattr(exc, "response", None)):
        headers = getattr(holder, "headers", None)
        if headers is None or not hasattr(headers, "get"):
            continue
        for name in ("retry-after", "Retry-After"):
            value = headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if 0 <= seconds < float("inf") else None
    return None


def type_name(exc: BaseException) -> str:
    """The name an exception's type is known by: ``httpx.ReadTimeout``, ``TimeoutError``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__.partition('.')[0]}.{cls.__qualname__}"


def _names(cls: type[BaseException]) -> list[set[str]]:
    """For each class of the MRO (most derived first): the names it answers to."""
    found = []
    for klass in cls.__mro__:
        module, qualname = klass.__module__, klass.__qualname__
        top = module.partition(".")[0]
        names = {f"{module}.{qualname}", f"{top}.{qualname}"}
        if module == "builtins":
            names.add(qualname)
        found.append(names)
    return found


def _declared(exc: BaseException, names: list[set[str]],
              declared: Iterable[type[BaseException] | str]) -> bool:
    for item in declared:
        if isinstance(item, str):
            if any(item in each for each in names):
                return True
        elif isinstance(exc, item):
            return True
    return False


def _default(exc: BaseException, depth: int = 0) -> ErrorOutcome | None:
    for names in _names(type(exc)):
        rule = next((_DEFAULTS[n] for n in names if n in _DEFAULTS), None)
        if rule is None:
            continue
        if isinstance(rule, ErrorOutcome):
            return rule
        if isinstance(rule, _ByStatus):
            status = status_of(exc)
            if status is None:
                if rule.fallback is not None:
                    return rule.fallback
                continue
            return _by_status(status)
        if isinstance(rule, _StatusInMessage):
            match = _STATUS_IN_MESSAGE.search(str(exc))
            return _by_status(int(match.group(1))) if match else rule.fallback
        cause = _wrapped(exc)
        if cause is None:
            if rule.bare is not None:
                return rule.bare
            continue
        if depth < 4 and _default(cause, depth + 1) is _T:
            return _T
        return rule.outcome
    return None


def _by_status(status: int) -> ErrorOutcome:
    if status in _TRANSIENT_STATUSES:
        return ErrorOutcome.TRANSIENT
    if status >= 500:
        return ErrorOutcome.AMBIGUOUS
    return ErrorOutcome.PERMANENT


def _wrapped(exc: BaseException) -> BaseException | None:
    """The exception a wrapper carries: urllib3's ``reason``, requests' first argument."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    first = exc.args[0] if exc.args else None
    if isinstance(first, BaseException):
        return first
    return exc.__cause__
