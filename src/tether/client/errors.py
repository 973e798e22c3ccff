"""What the client raises: the server's refusals, typed by status, and a stream it cannot keep.

::

    TetherError
    ├── ServerError                 the server answered 4xx/5xx: ``status``, ``type``, ``message``
    │   ├── BadRequestError           400  the request is malformed
    │   ├── AuthenticationError       401  no key, or a key the server does not know
    │   ├── PermissionDeniedError     403  the key lacks a role the action needs
    │   ├── NotFoundError             404  no such session, execution or approval for this tenant
    │   ├── ConflictError             409  a session conflict, a closed session, a result given
    │   ├── GoneError                 410  the session expired: restore it from the history you hold
    │   ├── RequestTooLargeError      413  a body, history or variable over the server's limits
    │   ├── UnprocessableEntityError  422  input refused (a trigger's schema, a client result …)
    │   └── InternalServerError       5xx  the server failed; a write may or may not have applied
    └── ConnectionFailedError       the server was not reached, or a stream could not be resumed

``type`` is the server's name for the refusal (``SessionConflict``, ``TriggerInputInvalid`` …)
and ``param`` the field it concerns, when it says.

The names follow the status classes SDK users know from the openai and anthropic SDKs
(``NotFoundError``, ``PermissionDeniedError`` …), and keep apart from the simulator's service
errors (:mod:`tether.sim.services.errors`: ``NotFound``, ``Conflict``), whose names travel on its
wire.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tether.errors import TetherError

__all__ = ["AuthenticationError", "BadRequestError", "ConflictError", "ConnectionFailedError",
           "GoneError", "InternalServerError", "NotFoundError", "PermissionDeniedError",
           "RequestTooLargeError", "ServerError", "UnprocessableEntityError", "error_for"]

#: The names the client's errors had before they were named as SDK users know them: still
#: importable, each with a DeprecationWarning naming the new one (not in ``__all__``, not
#: classes of their own: the old name is the new class).
RENAMED = {"BadRequest": "BadRequestError", "Unauthorized": "AuthenticationError",
           "Forbidden": "PermissionDeniedError", "NotFound": "NotFoundError",
           "Conflict": "ConflictError", "Gone": "GoneError",
           "RequestTooLarge": "RequestTooLargeError", "Unprocessable": "UnprocessableEntityError",
           "ServerFailure": "InternalServerError", "ConnectionFailed": "ConnectionFailedError"}


def renamed(module: str, name: str, table: dict[str, str], namespace: dict[str, Any]) -> Any:
    """The object an old ``name`` of ``module`` now goes by, with a DeprecationWarning; an
    AttributeError for any other name."""
    new = table.get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} is now {module}.{new}", DeprecationWarning, stacklevel=3)
    return namespace[new]


if not TYPE_CHECKING:  # to a checker the old names do not exist: it points at the new ones
    def __getattr__(name: str) -> Any:
        return renamed(__name__, name, RENAMED, globals())


class ServerError(TetherError):
    """The server refused or failed a request (status ≥ 400)."""

    def __init__(self, status: int, type: str, message: str, param: str | None = None) -> None:
        where = f" ({param})" if param else ""
        super().__init__(f"{status} {type}{where}: {message}")
        # ``message`` is the server's own text (the base class set it to the whole line).
        self.status, self.type, self.message, self.param = status, type, message, param

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.type, self.message, self.param))


class BadRequestError(ServerError):
    """400: the request is malformed."""


class AuthenticationError(ServerError):
    """401: the request has no ``Authorization: Bearer`` key, or one the server does not know."""


class PermissionDeniedError(ServerError):
    """403: the key does not hold a role the action needs (e.g. deciding an approval)."""


class NotFoundError(ServerError):
    """404: no such resource *for this key's tenant* (another tenant's look the same)."""


class ConflictError(ServerError):
    """409: another turn moved the session, the session is closed, or a result was given."""


class GoneError(ServerError):
    """410: the session expired; restore it (``Client.restore``) from the history you hold."""


class RequestTooLargeError(ServerError):
    """413: the body, a restored history or a variable is over the server's limits."""


class UnprocessableEntityError(ServerError):
    """422: the input was refused (a trigger's schema, a client result, a restore)."""


class InternalServerError(ServerError):
    """5xx: the server failed; a write may or may not have applied."""


_BY_STATUS: dict[int, type[ServerError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 410: GoneError, 413: RequestTooLargeError,
    422: UnprocessableEntityError,
}


def error_for(status: int, body: Any, text: str = "") -> ServerError:
    """The typed error of an answer with ``status`` ≥ 400 and JSON ``body`` (or raw ``text``).

    A body in the server's shape (``{"error": {"type", "message", "param"?}}``) gives its
    fields; anything else (a proxy's HTML page, a bare 502) is kept as the message, so the
    status is never lost.
    """
    cls = _BY_STATUS.get(status, InternalServerError if status >= 500 else ServerError)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        param = error.get("param")
        return cls(status, str(error.get("type") or f"http_{status}"), error["message"],
                   param if isinstance(param, str) else None)
    snippet = text.strip()[:500] or "(empty body)"
    return cls(status, f"http_{status}", f"the server answered {status} without an error "
               f"body in tether's shape: {snippet}")


class ConnectionFailedError(TetherError):
    """The server could not be reached, or a dropped stream could not be resumed.

    ``run_id`` and ``last_id`` say where the stream was (``None`` when unknown): follow it
    again with ``Client.events(run_id, after=last_id)``.
    """

    def __init__(self, message: str, *, run_id: str | None = None,
                 last_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id, self.last_id = run_id, last_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_connection_failed, (str(self), self.run_id, self.last_id))


def _rebuild_connection_failed(message: str, run_id: str | None,
                               last_id: int | None) -> ConnectionFailedError:
    return ConnectionFailedError(message, run_id=run_id, last_id=last_id)
