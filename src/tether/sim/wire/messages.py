"""What crosses the wire between an agent and the simulated world: requests, responses, and
the ways a call can end without a response.

These are plain values, independent of any HTTP library: the in-process transports build a
:class:`WireRequest` from an ``httpx`` or ``stripe`` request, the ASGI app builds one from
the server's scope, and both carry a :class:`WireResponse` back. What goes wrong on the way
is an exception:

=======================  ==============================================================
``ConnectionDropped``    the connection closed before any response (``delivered`` says
                         whether the server applied the request first)
``InjectedStatus``       an injected HTTP error (5xx, 429 with ``retry_after_s``): the
                         service applied nothing
``CredentialsExpired``   the caller's credentials expired (the ``auth_expiry`` fault)
``BadRequestBody``       the body is not what the face accepts (invalid JSON, a form key
                         it cannot parse)
=======================  ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = ["BadRequestBody", "ConnectionDropped", "CredentialsExpired", "InjectedStatus",
           "WireRequest", "WireResponse"]


class ConnectionDropped(Exception):
    """No response came back; ``delivered``: the server applied the request first (a timeout
    after commit) rather than never seeing it; ``read_timeout``: the client gave up waiting
    (so, like ``delivered``, it cannot tell what happened) rather than failing to connect."""

    def __init__(self, message: str, *, delivered: bool, read_timeout: bool = False) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.read_timeout = read_timeout


class InjectedStatus(Exception):
    """An injected error status (``503``, ``429`` …); nothing was applied."""

    def __init__(self, message: str, *, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class CredentialsExpired(Exception):
    """The caller's credentials expired before the service saw the call."""


class BadRequestBody(ValueError):
    """The request's body or query cannot be read as the face expects (the reason says why)."""


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request to a simulated service, below the service's path prefix.

    >>> request = WireRequest("GET", "/v1/refunds", query=(("charge", "ch_1"),),
    ...                       service="payments")
    >>> request.param("charge"), request.header("authorization")
    ('ch_1', None)
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    service: str = ""

    @classmethod
    def of(cls, method: str, target: str, headers: Mapping[str, str], body: bytes,
           ) -> WireRequest:
        """A request from an absolute path with its query string (``/payments/v1/x?a=1``):
        the first segment names the service."""
        path, _, query = target.partition("?")
        segments = unquote(path).lstrip("/").split("/", 1)
        service = segments[0]
        below = "/" + segments[1] if len(segments) > 1 else "/"
        return cls(method.upper(), below, tuple(parse_qsl(query, keep_blank_values=True)),
                   {k.lower(): v for k, v in headers.items()}, body, service)

    def header(self, name: str) -> str | None:
        """A header's value (names are case-insensitive), or ``None``."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """The first query parameter ``name``, or ``None``."""
        return next((v for k, v in self.query if k == name), None)

    def json(self) -> Any:
        """The body as JSON (an empty body is ``{}``); raises :class:`BadRequestBody`."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nested deeper than the parser recurses ("[[[[…").
            raise BadRequestBody(f"the request body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class WireResponse:
    """One HTTP response: status, headers (names as sent), body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def of_json(cls, status: int, data: Any,
                headers: Mapping[str, str] | None = None) -> WireResponse:
        """A JSON response; keys are sorted so equal data gives equal bytes."""
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
        return cls(status, {"content-type": "application/json", **(headers or {})}, body)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None
