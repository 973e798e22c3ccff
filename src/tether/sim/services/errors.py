"""Typed errors of the simulated services.

Every error a simulated service raises is a :class:`ServiceError` carrying an HTTP-like
``status`` and a ``retryable`` flag, so the tool layer can translate it the way a real client
library would (a 409 in-flight conflict is worth retrying later; a 404 is not)::

    ServiceError                 status, retryable, service
    ├── NotFound                 404  no such resource (``resource``, ``resource_id``)
    ├── InvalidRequest           400  the service rejects the arguments (``param``)
    ├── Conflict                 409  an idempotency key is in flight or reused with other
    │                                 arguments (``reason``: "in_flight" | "mismatch")
    ├── PaymentsError            Stripe-shaped: ``type``, ``code``, ``message``, ``param``,
    │                            ``status`` (400 / 402 / 404 / 409 / 500)
    └── AuthError                401  credentials refused (``client``)
        ├── TokenExpired         the access token's expiry passed on the virtual clock:
        │                        refresh it and call again
        └── TokenInvalid         the token was never issued, or was rotated away

Each error keeps its constructor arguments, in order and as plain values, in ``args``: it
pickles, and :func:`tether.errors.rebuild_error` rebuilds it from a journaled record with its
type and fields, so a resumed run re-raises exactly what the first attempt saw.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "PaymentsError",
    "ServiceError",
    "TokenExpired",
    "TokenInvalid",
]


class ServiceError(Exception):
    """A simulated service refused or failed a request.

    >>> err = ServiceError("backend on fire", "crm", 503, True)
    >>> (str(err), err.status, err.retryable)
    ('backend on fire', 503, True)
    """

    def __init__(self, message: str, service: str = "", status: int = 500,
                 retryable: bool = False) -> None:
        super().__init__(message, service, status, retryable)
        self.message = message
        self.service = service
        self.status = status
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def to_data(self) -> dict[str, Any]:
        """The JSON form a tool returns to the agent in place of a result."""
        return {"error": type(self).__name__, "service": self.service, "status": self.status,
                "retryable": self.retryable, "message": self.message}


class NotFound(ServiceError):
    """The service holds no ``resource`` named ``resource_id`` (as seen by the copy it read)."""

    def __init__(self, message: str, service: str = "", resource: str = "",
                 resource_id: str = "") -> None:
        ServiceError.__init__(self, message, service, 404, False)
        self.args = (message, service, resource, resource_id)
        self.resource = resource
        self.resource_id = resource_id


class InvalidRequest(ServiceError):
    """The arguments are malformed or break a rule of the service; ``param`` names the culprit."""

    def __init__(self, message: str, service: str = "", param: str | None = None) -> None:
        ServiceError.__init__(self, message, service, 400, False)
        self.args = (message, service, param)
        self.param = param


class Conflict(ServiceError):
    """An idempotency key clash: ``in_flight`` (retry later) or ``mismatch`` (use a new key)."""

    def __init__(self, message: str, service: str = "", reason: str = "") -> None:
        ServiceError.__init__(self, message, service, 409, reason == "in_flight")
        self.args = (message, service, reason)
        self.reason = reason


class PaymentsError(ServiceError):
    """An error shaped like Stripe's: ``type``, ``code``, ``message``, ``param``, ``status``.

    ``type`` is one of ``card_error``, ``invalid_request_error``, ``api_error`` and
    ``idempotency_error``; ``code`` is Stripe's (``amount_too_large``, ``resource_missing`` …)
    or ``None`` where Stripe sends none.

    >>> err = PaymentsError("invalid_request_error", "resource_missing",
    ...                     "No such charge: 'ch_9'", "charge", 404)
    >>> err.to_stripe()["error"]["param"], err.retryable
    ('charge', False)
    """

    def __init__(self, type: str, code: str | None, message: str, param: str | None = None,
                 status: int = 400) -> None:
        retryable = status in (409, 429) or status >= 500
        ServiceError.__init__(self, message, "payments", status, retryable)
        self.args = (type, code, message, param, status)
        self.type = type
        self.code = code
        self.param = param

    def to_stripe(self) -> dict[str, Any]:
        """The response body Stripe would send."""
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            body["code"] = self.code
        if self.param is not None:
            body["param"] = self.param
        return {"error": body}

    def to_data(self) -> dict[str, Any]:
        """The generic fields plus Stripe's ``type``, ``code`` and ``param``."""
        return {**super().to_data(), **self.to_stripe()["error"], "error": "PaymentsError"}


class AuthError(ServiceError):
    """The credentials presented by ``client`` were refused."""

    def __init__(self, message: str, client: str = "") -> None:
        ServiceError.__init__(self, message, "identity", 401, False)
        self.args = (message, client)
        self.client = client


class TokenExpired(AuthError):
    """The access token expired at ``expired_at`` (virtual time); refresh it and call again."""

    def __init__(self, message: str, client: str = "", expired_at: float = 0.0) -> None:
        AuthError.__init__(self, message, client)
        self.args = (message, client, expired_at)
        self.expired_at = expired_at


class TokenInvalid(AuthError):
    """The token was never issued by this service, or a rotation replaced it."""
