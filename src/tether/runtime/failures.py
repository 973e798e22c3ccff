"""The failure taxonomy: every failure is classified once, where it happens.

Each :class:`FailureType` belongs to one of the six failure domains, so a run's failures can be
counted by where the corrective control belongs (the model, its context, a tool's interface,
the harness, the infrastructure, or governance):

=========================  ===============  ==================================================
failure                    domain           typical cause
=========================  ===============  ==================================================
``rate_limited``           infrastructure   HTTP 429 from a model or a tool's dependency
``model_unavailable``      infrastructure   5xx, overloaded, timeout, lost connection
``model_rejected``         harness          the provider refused the request (other 4xx)
``context_overflow``       context          the request exceeds the context window
``malformed_output``       model            unparseable tool arguments, an empty answer
``invalid_tool_call``      tool_interface   unknown tool, arguments that fail the schema
``transient_tool_error``   infrastructure   a tool's dependency failed before taking effect
``ambiguous_write``        infrastructure   a write's outcome is unknown (timeout after send)
``permanent_tool_error``   tool_interface   the tool rejected the call; retrying cannot help
``tool_result_invalid``    tool_interface   a result broke the tool's declared schema (drift)
``auth_expired``           infrastructure   credentials expired or were revoked
``policy_denied``          governance       a policy refused the call
``budget_exceeded``        harness          a run limit was reached
``no_progress``            harness          the same call repeated, or failures in a row
``crash``                  infrastructure   the worker died
=========================  ===============  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tether.errors import (
    AuthExpired,
    BudgetExceeded,
    ModelError,
    ToolArgsInvalid,
    ToolFailed,
    ToolResultInvalid,
)
from tether.runtime.ambiguity import ErrorOutcome, outcome_of, retry_after_s, status_of

__all__ = ["DOMAINS", "Domain", "Failure", "FailureType", "classify"]


class Domain(StrEnum):
    """Where a failure's corrective control belongs (the seeds' six domains)."""

    MODEL = "model"
    CONTEXT = "context"
    TOOL_INTERFACE = "tool_interface"
    HARNESS = "harness"
    INFRASTRUCTURE = "infrastructure"
    GOVERNANCE = "governance"


class FailureType(StrEnum):
    """The classes of failure tether tells apart; see the table in this module's docstring."""

    RATE_LIMITED = "rate_limited"
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_REJECTED = "model_rejected"
    CONTEXT_OVERFLOW = "context_overflow"
    MALFORMED_OUTPUT = "malformed_output"
    INVALID_TOOL_CALL = "invalid_tool_call"
    TRANSIENT_TOOL_ERROR = "transient_tool_error"
    AMBIGUOUS_WRITE = "ambiguous_write"
    PERMANENT_TOOL_ERROR = "permanent_tool_error"
    TOOL_RESULT_INVALID = "tool_result_invalid"
    AUTH_EXPIRED = "auth_expired"
    POLICY_DENIED = "policy_denied"
    BUDGET_EXCEEDED = "budget_exceeded"
    NO_PROGRESS = "no_progress"
    CRASH = "crash"

    @property
    def domain(self) -> Domain:
        return DOMAINS[self]


DOMAINS: dict[FailureType, Domain] = {
    FailureType.RATE_LIMITED: Domain.INFRASTRUCTURE,
    FailureType.MODEL_UNAVAILABLE: Domain.INFRASTRUCTURE,
    FailureType.MODEL_REJECTED: Domain.HARNESS,
    FailureType.CONTEXT_OVERFLOW: Domain.CONTEXT,
    FailureType.MALFORMED_OUTPUT: Domain.MODEL,
    FailureType.INVALID_TOOL_CALL: Domain.TOOL_INTERFACE,
    FailureType.TRANSIENT_TOOL_ERROR: Domain.INFRASTRUCTURE,
    FailureType.AMBIGUOUS_WRITE: Domain.INFRASTRUCTURE,
    FailureType.PERMANENT_TOOL_ERROR: Domain.TOOL_INTERFACE,
    FailureType.TOOL_RESULT_INVALID: Domain.TOOL_INTERFACE,
    FailureType.AUTH_EXPIRED: Domain.INFRASTRUCTURE,
    FailureType.POLICY_DENIED: Domain.GOVERNANCE,
    FailureType.BUDGET_EXCEEDED: Domain.HARNESS,
    FailureType.NO_PROGRESS: Domain.HARNESS,
    FailureType.CRASH: Domain.INFRASTRUCTURE,
}

# Names journaled by earlier versions of the tool layer, read as today's classes.
_TOOL_FAILURES = {
    "permanent": FailureType.PERMANENT_TOOL_ERROR,
    "reconcile_failed": FailureType.PERMANENT_TOOL_ERROR,
    "invalid_result": FailureType.TOOL_RESULT_INVALID,
    "retries_exhausted": FailureType.TRANSIENT_TOOL_ERROR,
    "transient": FailureType.TRANSIENT_TOOL_ERROR,
    "auth_expired": FailureType.AUTH_EXPIRED,
    "ambiguous_write": FailureType.AMBIGUOUS_WRITE,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure: its type (and so its domain), a message, a provider's hint."""

    type: FailureType
    message: str
    retry_after_s: float | None = None

    @property
    def domain(self) -> Domain:
        return DOMAINS[self.type]

    def as_data(self) -> dict[str, object]:
        """The journaled form, inside a ``decision`` event."""
        return {"failure": self.type.value, "domain": self.domain.value,
                "message": self.message[:500], "retry_after_s": self.retry_after_s}


def classify(exc: BaseException) -> Failure:
    """The failure an exception stands for. Unknown exceptions are permanent tool errors when
    they come from a tool and are otherwise read as the model's (the caller knows which).

    Timeouts and lost connections — tether's :class:`AmbiguousOutcome`, the built-ins, and the
    client libraries :mod:`tether.runtime.ambiguity` knows — are ``ambiguous_write``; failures
    that certainly did not take effect are ``transient_tool_error`` (``rate_limited`` for a
    429)."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModelError):
        known = exc.failure in FailureType.__members__.values()
        kind = FailureType(exc.failure) if known else FailureType.MODEL_REJECTED
        return Failure(kind, message, exc.retry_after_s)
    if isinstance(exc, AuthExpired):
        return Failure(FailureType.AUTH_EXPIRED, message)
    if isinstance(exc, BudgetExceeded):
        return Failure(FailureType.BUDGET_EXCEEDED, message)
    if isinstance(exc, ToolArgsInvalid):
        return Failure(FailureType.INVALID_TOOL_CALL, message)
    if isinstance(exc, ToolResultInvalid):
        return Failure(FailureType.TOOL_RESULT_INVALID, message)
    if isinstance(exc, ToolFailed):
        if exc.failure in FailureType.__members__.values():
            return Failure(FailureType(exc.failure), message)
        return Failure(_TOOL_FAILURES.get(exc.failure, FailureType.PERMANENT_TOOL_ERROR), message)
    # The same reading a tool call makes (tether.runtime.ambiguity), without a tool's own
    # declarations: a client library's timeout is an ambiguous write here too.
    outcome = outcome_of(exc)
    if outcome is ErrorOutcome.AMBIGUOUS:
        return Failure(FailureType.AMBIGUOUS_WRITE, message)
    if outcome is ErrorOutcome.TRANSIENT:
        hint = retry_after_s(exc)
        if status_of(exc) == 429:
            return Failure(FailureType.RATE_LIMITED, message, hint)
        return Failure(FailureType.TRANSIENT_TOOL_ERROR, message, hint)
    return Failure(FailureType.PERMANENT_TOOL_ERROR, message)
