"""Service errors: statuses, retryable flags, Stripe's shape, and journal round-trips."""

from __future__ import annotations

import pickle

import pytest

from tether.errors import error_record, rebuild_error
from tether.sim.services.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    PaymentsError,
    ServiceError,
    TokenExpired,
    TokenInvalid,
)

ERRORS = [
    NotFound("no ticket 't9'", "crm", "ticket", "t9"),
    InvalidRequest("bad status", "crm", "status"),
    Conflict("key in use", "email", "in_flight"),
    Conflict("key reused", "calendar", "mismatch"),
    PaymentsError("invalid_request_error", "amount_too_large", "too much", "amount", 400),
    PaymentsError("idempotency_error", None, "other params", None, 400),
    AuthError("refused", "bot"),
    TokenExpired("expired", "bot", 1_767_225_660.0),
    TokenInvalid("unknown token", "bot"),
]


def test_tree() -> None:
    """Every service error derives from ServiceError, and token errors from AuthError."""
    assert all(isinstance(e, ServiceError) for e in ERRORS)
    assert issubclass(TokenExpired, AuthError) and issubclass(TokenInvalid, AuthError)


def test_statuses_and_retryable_flags() -> None:
    """Statuses are HTTP-like; only in-flight conflicts, 429s and 5xx are retryable."""
    assert [(e.status, e.retryable) for e in ERRORS] == [
        (404, False), (400, False), (409, True), (409, False), (400, False), (400, False),
        (401, False), (401, False), (401, False)]
    assert PaymentsError("invalid_request_error", "idempotency_key_in_use", "m", None,
                         409).retryable
    assert PaymentsError("api_error", None, "boom", None, 500).retryable
    assert not PaymentsError("card_error", "card_declined", "declined", None, 402).retryable


def test_str_is_the_message() -> None:
    """str() of an error is its message, not the tuple of its arguments."""
    assert str(NotFound("no ticket 't9'", "crm", "ticket", "t9")) == "no ticket 't9'"


def test_payments_error_has_stripes_shape() -> None:
    """to_stripe() is Stripe's error body, leaving out a missing code or param."""
    err = PaymentsError("invalid_request_error", "resource_missing", "No such charge: 'x'",
                        "charge", 404)
    assert err.to_stripe() == {"error": {"type": "invalid_request_error",
                                         "code": "resource_missing",
                                         "message": "No such charge: 'x'", "param": "charge"}}
    assert PaymentsError("idempotency_error", None, "m").to_stripe() == {
        "error": {"type": "idempotency_error", "message": "m"}}
    assert err.to_data()["status"] == 404 and err.to_data()["code"] == "resource_missing"


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_round_trip_through_the_journal(err: ServiceError) -> None:
    """error_record/rebuild_error rebuild the same type with the same fields."""
    rebuilt = rebuild_error(error_record(err))
    assert type(rebuilt) is type(err)
    assert rebuilt.args == err.args and vars(rebuilt) == vars(err)


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_pickles(err: ServiceError) -> None:
    """Errors pickle with their type and fields."""
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and vars(again) == vars(err)
