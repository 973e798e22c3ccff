"""Exceptions and signals raised by tether.

Errors (``Exception``) describe something that went wrong::

    TetherError
    ├── UsageError                  tether was called wrongly; fix the calling code
    │   ├── UnknownWorkflow         a journal names a workflow this runtime was not given
    │   ├── AlreadyDecided          a wait was resolved (an approval decided) before this call
    │   │   └── ClientResultConflict  a client call was already answered with another result
    │   ├── UnknownExecution        no execution (run) with that id: nothing to continue
    │   ├── ClientResultRefused     a client result was refused (not requested, invalid, late)
    │   ├── ToolArgsInvalid         arguments do not validate against the tool's schema
    │   ├── SessionInactive         a session is expired or closed; restore or start another
    │   ├── RestoreRefused          a client's copy of a session's history fails validation
    │   ├── TriggerInputInvalid     a trigger's input does not fit its schema; nothing ran
    │   ├── WebhookRejected         a webhook's signature is missing, forged or stale; nothing ran
    │   └── SuiteNotApplicable      a reliability suite finds nothing to test in this agent
    ├── StoreError                  the journal store could not do what was asked
    │   ├── ConcurrencyConflict     another writer appended to the same run first
    │   │   ├── LeaseLost           this worker's lease was taken over; its appends are fenced
    │   │   └── SessionConflict     another turn changed the session first (its revision moved)
    │   ├── RunOwned                another worker holds a live lease on the run
    │   ├── CorruptJournal          stored bytes fail a check: checksum, gap in seq, unreadable file
    │   └── SchemaTooNew            the store or an event was written by a newer tether
    └── RunError                    a run cannot go on as written
        ├── NonDeterminismError     the workflow's calls differ from what its journal recorded
        ├── ToolFailed              a tool call failed definitively (carries the failure class)
        │   └── ToolResultInvalid   a handler's result broke the tool's declared result schema
        ├── WaitTimedOut            a durable wait passed its deadline unresolved
        ├── ModelError              a model call failed (carries the failure class)
        │   ├── RateLimited         the provider throttled the call; ``retry_after_s`` if it said
        │   ├── ContextOverflow     the request does not fit the model's context window
        │   ├── ModelUnavailable    5xx, timeout, lost connection: worth retrying later
        │   └── MalformedOutput     the response cannot be used as it is (bad JSON, no content)
        ├── AuthExpired             credentials of a model or tool expired or were revoked
        ├── BudgetExceeded          a run limit (steps, tokens, cost, time …) was reached
        ├── RecoveryIncomplete      recover() resumed the runs it could; some could not be
        └── RecordedError           a journaled error whose original type cannot be rebuilt

The HTTP client's errors (``ServerError`` and its subclasses by status,
``ConnectionFailedError``) also derive from :class:`TetherError`; their tree is drawn in
:mod:`tether.client.errors`.

Signals steer a run; they are not failures of tether itself:

* :class:`AmbiguousOutcome` (an ``Exception``) is what a tool handler raises when it cannot tell
  whether its effect happened (a timeout after the request left, a dropped connection).
  ``TimeoutError``, ``ConnectionError`` and the timeouts and lost connections of the common
  client libraries (``stripe``, ``httpx``, ``requests``, ``aiohttp``, ``openai`` …) raised by a
  handler are read the same way; see :mod:`tether.runtime.ambiguity`.
* :class:`TransientError` (an ``Exception``) is what a tool handler raises when the call
  certainly did *not* take effect and may succeed later (a refused connection, a 429);
  the runtime retries it under the retry policy. Client libraries' connect failures and 429s
  are read the same way.
* :class:`RunSuspended`, :class:`RunEscalated`, :class:`OwnershipLost` and :class:`Crash`
  derive from ``BaseException`` so that workflow code's ``except Exception`` cannot swallow
  them: the runtime must see them.

Every error that is journaled round-trips through :meth:`TetherError.to_record` (or
:func:`error_record`) and :func:`rebuild_error`, so a resumed run re-raises the same error it
raised the first time: the same type, ``args`` and attributes, or — when those cannot all be
journaled — a :class:`RecordedError` naming the original type, which a step raises live too.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "AlreadyDecided",
    "AmbiguousOutcome",
    "AuthExpired",
    "BudgetExceeded",
    "ClientResultConflict",
    "ClientResultRefused",
    "ConcurrencyConflict",
    "ContextOverflow",
    "CorruptJournal",
    "Crash",
    "LeaseLost",
    "MalformedOutput",
    "ModelError",
    "ModelUnavailable",
    "NonDeterminismError",
    "OwnershipLost",
    "RateLimited",
    "RecordedError",
    "RecoveryIncomplete",
    "RestoreRefused",
    "RunError",
    "RunEscalated",
    "RunOwned",
    "RunSuspended",
    "SchemaTooNew",
    "SessionConflict",
    "SessionInactive",
    "StoreError",
    "SuiteNotApplicable",
    "TetherError",
    "ToolArgsInvalid",
    "ToolFailed",
    "ToolResultInvalid",
    "TransientError",
    "TriggerInputInvalid",
    "UnknownExecution",
    "UnknownWorkflow",
    "UsageError",
    "WaitTimedOut",
    "WebhookRejected",
    "error_record",
    "rebuild_error",
]


class TetherError(Exception):
    """Base of every error tether raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_record(self) -> dict[str, Any]:
        """The JSON form journaled for this error; :func:`rebuild_error` reverses it."""
        return {"type": _qualified(type(self)), "message": self.message, "data": {}}

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild_error, (self.to_record(),))


class UsageError(TetherError):
    """tether was called in a way it does not support; the message says how to fix it."""


class UnknownWorkflow(UsageError):
    """A journal names a workflow that was not registered with this runtime."""


class AlreadyDecided(UsageError):
    """``key`` of ``run_id`` was already resolved: the first decision stands.

    ``by``, ``at`` (clock time), ``value`` and ``note`` describe that first decision, so the
    caller can tell its user who decided what, and when.
    """

    def __init__(self, message: str, *, run_id: str = "", key: str = "", by: str = "",
                 at: float = 0.0, value: Any = None, note: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.key = key
        self.by = by
        self.at = at
        self.value = value
        self.note = note

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"run_id": self.run_id, "key": self.key, "by": self.by, "at": self.at,
                          "value": self.value, "note": self.note}
        return record


class SessionInactive(UsageError):
    """Session ``session_id`` is ``status`` (``expired`` or ``closed``): no turn may start in
    it. An expired session is brought back with ``Sessions.restore``; a closed one is final."""

    def __init__(self, message: str, *, session_id: str = "", status: str = "") -> None:
        super().__init__(message)
        self.session_id = session_id
        self.status = status

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"session_id": self.session_id, "status": self.status}
        return record


class RestoreRefused(UsageError):
    """A client's copy of a session's history was refused (a role it may not claim, a tool
    result that answers no call in it …); the message names the message index and why."""


class TriggerInputInvalid(UsageError):
    """A trigger's input does not fit the trigger's input schema (or a variable it sets does
    not fit the variable's type); nothing was appended or run."""


class WebhookRejected(UsageError):
    """A webhook delivery was refused before anything was appended: its signature is missing,
    malformed or does not match the body, its timestamp is outside the tolerance (a replay),
    or it carries no event id. ``reason`` is one of ``missing-signature``,
    ``malformed-signature``, ``bad-signature``, ``stale``, ``missing-event-id``. The message
    never holds the secret or the expected signature."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"reason": self.reason}
        return record


class ClientResultConflict(AlreadyDecided):
    """A client call of ``run_id`` was already answered with another result: the first answer
    stands (``value``) and the run went on with it; nothing was recorded."""


class UnknownExecution(UsageError):
    """No execution ``execution_id`` (a run id) is in the store: nothing to continue."""

    def __init__(self, message: str, *, execution_id: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"execution_id": self.execution_id}
        return record


class ClientResultRefused(UsageError):
    """A result for client call ``call_id`` of ``execution_id`` was refused, and nothing of the
    continue was recorded: the call was never requested, its wait expired, the run is finished,
    or the value breaks the tool's result schema. The message says which, and what to send."""

    def __init__(self, message: str, *, execution_id: str = "", call_id: str = "") -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.call_id = call_id

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"execution_id": self.execution_id, "call_id": self.call_id}
        return record


class ToolArgsInvalid(UsageError):
    """Arguments given to a tool do not validate against its argument model."""


class SuiteNotApplicable(UsageError):
    """A reliability suite cannot be applied to an agent: what it targets (a write, a read with
    fields, a read an instruction could be planted in) the agent did not do in a fault-free
    run. The message names the suite, the agent and what is missing."""


class StoreError(TetherError):
    """The journal store failed to read or write."""


class ConcurrencyConflict(StoreError):
    """Another writer appended to this run since this writer last read it.

    The losing writer must stop executing the run: the winner owns it now.
    """

    def __init__(self, message: str, *, run_id: str = "", expected_seq: int = 0) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.expected_seq = expected_seq


class RunOwned(StoreError):
    """Another worker holds a live lease on ``run_id``: ``owner`` until ``expires_at`` (the
    caller's clock time), under lease ``epoch``. Leave the run to it, or retry after expiry."""

    def __init__(self, message: str, *, run_id: str = "", owner: str = "",
                 expires_at: float = 0.0, epoch: int = 0) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at
        self.epoch = epoch

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"run_id": self.run_id, "owner": self.owner,
                          "expires_at": self.expires_at, "epoch": self.epoch}
        return record


class LeaseLost(ConcurrencyConflict):
    """The lease ``owner`` held on ``run_id`` under ``epoch`` is no longer current: another
    worker took the run over (``holder``, ``holder_epoch``; empty when nobody holds it now).
    The append or renewal was refused and stored nothing; this worker must stop the run."""

    def __init__(self, message: str, *, run_id: str = "", owner: str = "", epoch: int = 0,
                 holder: str = "", holder_epoch: int = 0) -> None:
        super().__init__(message, run_id=run_id)
        self.owner = owner
        self.epoch = epoch
        self.holder = holder
        self.holder_epoch = holder_epoch

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"run_id": self.run_id, "owner": self.owner, "epoch": self.epoch,
                          "holder": self.holder, "holder_epoch": self.holder_epoch}
        return record


class SessionConflict(ConcurrencyConflict):
    """Another writer changed session ``session_id`` first: this writer expected revision
    ``expected_revision`` and found ``found_revision``. Nothing was appended; read the session
    again and retry the turn if it still makes sense."""

    def __init__(self, message: str, *, session_id: str = "", expected_revision: int = 0,
                 found_revision: int = 0) -> None:
        super().__init__(message, run_id=f"session:{session_id}", expected_seq=expected_revision)
        self.session_id = session_id
        self.expected_revision = expected_revision
        self.found_revision = found_revision

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"session_id": self.session_id,
                          "expected_revision": self.expected_revision,
                          "found_revision": self.found_revision}
        return record


class CorruptJournal(StoreError):
    """Stored journal data failed a check; nothing was dropped or repaired silently."""


class SchemaTooNew(StoreError):
    """The store's schema or an event's version is newer than this tether understands."""


class RunError(TetherError):
    """A run cannot continue as written."""


class NonDeterminismError(RunError):
    """The workflow made a different durable call than the one its journal recorded."""


class ToolFailed(RunError):
    """A tool call failed definitively.

    ``failure`` is its class in :mod:`tether.runtime.failures` (``permanent_tool_error``,
    ``transient_tool_error``, ``tool_result_invalid``, ``auth_expired`` …); ``error_type``
    names the exception the handler raised.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        failure: str = "permanent_tool_error",
        error_type: str = "",
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.failure = failure
        self.error_type = error_type

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"tool": self.tool, "failure": self.failure, "error_type": self.error_type}
        return record


class ToolResultInvalid(ToolFailed):
    """A handler returned a result that does not match the tool's declared result model."""


class WaitTimedOut(RunError):
    """A durable wait reached its deadline without being resolved."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"key": self.key}
        return record


class ModelError(RunError):
    """A model call failed. ``failure`` is its class in :mod:`tether.runtime.failures`."""

    failure = "model_error"

    def __init__(self, message: str, *, model: str = "", retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.retry_after_s = retry_after_s
        self.status = status

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"model": self.model, "retry_after_s": self.retry_after_s,
                          "status": self.status}
        return record


class RateLimited(ModelError):
    """The provider throttled the call (HTTP 429); ``retry_after_s`` is its hint, if any."""

    failure = "rate_limited"


class ContextOverflow(ModelError):
    """The request is larger than the model's context window."""

    failure = "context_overflow"


class ModelUnavailable(ModelError):
    """A transient provider failure: 5xx, overloaded, timeout, connection lost."""

    failure = "model_unavailable"


class MalformedOutput(ModelError):
    """The model answered something that cannot be used: unparseable tool arguments, no
    content and no tool call, a call to a tool that does not exist."""

    failure = "malformed_output"


class AuthExpired(RunError):
    """Credentials of ``dependency`` (a model or a tool) expired or were revoked."""

    def __init__(self, message: str, *, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"dependency": self.dependency}
        return record


class BudgetExceeded(RunError):
    """A run limit was reached; ``limit`` names it (``max_steps``, ``max_cost_usd`` …)."""

    def __init__(self, message: str, *, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["data"] = {"limit": self.limit}
        return record


class RecoveryIncomplete(RunError):
    """``Runtime.recover()`` resumed every run it could; ``failures`` lists the ones it could
    not (run id, error), ``results`` the others' outcomes."""

    def __init__(self, message: str, *, results: Any = (), failures: Any = ()) -> None:
        super().__init__(message)
        self.results = list(results)
        self.failures = list(failures)


class RecordedError(RunError):
    """A journaled error whose original exception type could not be rebuilt on replay."""

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type

    def to_record(self) -> dict[str, Any]:
        return {"type": self.error_type or _qualified(type(self)), "message": self.message,
                "data": {}}


class AmbiguousOutcome(Exception):
    """Raised by a tool handler that cannot tell whether its effect happened."""


class TransientError(Exception):
    """Raised by a tool handler when its call certainly did not take effect and may succeed
    if retried later; ``retry_after_s`` is the dependency's hint, if it gave one."""

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RunSuspended(BaseException):
    """The run waits durably for an external resolution; its process may stop now."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class RunEscalated(BaseException):
    """The run needs a human: it stops with status ``escalated`` and the reason journaled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OwnershipLost(BaseException):
    """This worker lost the run it was executing (its lease was taken over): the run stops
    before its next durable call, writing nothing more. ``error`` is the :class:`LeaseLost`
    that told; the runtime raises it to its caller. Not a failure of the run."""

    def __init__(self, error: LeaseLost) -> None:
        super().__init__(str(error))
        self.error = error


class Crash(BaseException):
    """A simulated worker crash: the runtime abandons the run without writing anything more."""


def _qualified(cls: type[BaseException]) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_record(exc: BaseException, *,
                 encode: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The JSON form of any exception, as journaled.

    tether's errors give their own :meth:`TetherError.to_record`. Any other exception is
    recorded by type, message, ``args`` and the attributes in its ``__dict__``. With
    ``encode`` (the journal's codec: JSON form of a value, or an exception when it has none)
    the record is *faithful*: args and attributes are journaled in the codec's form, and when
    one of them cannot be, the record says so (``data["lost"]``) and :func:`rebuild_error`
    gives a :class:`RecordedError` rather than an exception that only looks like the original.
    Without ``encode``, only the plain scalars among them are kept (``data["partial"]`` when
    some were not).
    """
    if isinstance(exc, TetherError):
        return exc.to_record()
    record: dict[str, Any] = {"type": _qualified(type(exc)), "message": _message(exc)}
    attrs = dict(getattr(exc, "__dict__", {}))
    if encode is None:
        args = [a for a in exc.args if _scalar(a)]
        kept = {k: v for k, v in attrs.items() if isinstance(k, str) and _scalar(v)}
        record["data"] = {"args": args, "attrs": kept}
        if len(args) < len(exc.args) or len(kept) < len(attrs):
            record["data"]["partial"] = True
        return record
    try:
        record["data"] = {"args": encode(list(exc.args)), "attrs": encode(attrs)}
    except Exception as lost:  # any refusal of the codec means the same
        record["data"] = {"lost": _message(lost)}
    return record


def rebuild_error(record: dict[str, Any]) -> BaseException:
    """Rebuild the exception a record describes, or a :class:`RecordedError` standing in for it.

    tether's own errors come back with their data. Other exceptions come back as their own
    type when it is importable, with the recorded ``args`` and attributes; a type that cannot
    be made so (or a record that lost some of them) comes back as :class:`RecordedError`
    carrying the original type's name and message.
    """
    type_name = str(record.get("type", ""))
    message = str(record.get("message", ""))
    data = record.get("data") or {}
    cls = _resolve_exception_type(type_name)
    if cls is not None and issubclass(cls, TetherError):
        try:
            return cls(message, **data)
        except TypeError:
            return RecordedError(message, error_type=type_name)
    if cls is not None and issubclass(cls, Exception) and "lost" not in data:
        rebuilt = _rebuilt(cls, list(data.get("args", [message])), data.get("attrs") or {},
                           bare=not data.get("partial"))
        if rebuilt is not None:
            return rebuilt
    return RecordedError(message, error_type=type_name)


def _rebuilt(cls: type[Exception], args: list[Any], attrs: dict[str, Any], *,
             bare: bool) -> Exception | None:
    """``cls`` with exactly ``args`` and ``attrs``: built through its constructor when that
    accepts the args (C-level fields such as ``OSError.errno`` are set there), else — when
    ``bare`` allows, the record holding all of them — without it."""
    try:
        exc = cls(*args)
    except Exception:  # a constructor with other needs: build it bare
        if not bare:
            return None
        try:
            exc = cls.__new__(cls)
        except Exception:
            return None
    try:
        exc.args = tuple(args)
        if attrs:
            exc.__dict__.update(attrs)
    except Exception:  # slots, read-only properties: not rebuilt faithfully
        return None
    return exc


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in naming the type when its ``__str__`` itself fails."""
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return f"<{_qualified(type(exc))} whose message cannot be printed>"


def _resolve_exception_type(type_name: str) -> type[BaseException] | None:
    if "." not in type_name:
        candidate = getattr(builtins, type_name, None)
    else:
        module_name, _, attr = type_name.rpartition(".")
        candidate = None
        while module_name:
            try:
                candidate = importlib.import_module(module_name)
                break
            except ImportError:
                module_name, _, head = module_name.rpartition(".")
                attr = f"{head}.{attr}"
        for part in attr.split("."):
            candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None
