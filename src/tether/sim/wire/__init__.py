"""The simulated world on the wire: the same services, faults and ledger, reached over HTTP
(a Stripe-compatible API for payments, JSON APIs for the others, an OAuth2 token endpoint) and
MCP, in-process (deterministic) or over loopback (``tether sim serve``).

An agent factory reaches it through its :class:`~tether.sim.environment.Environment`:
``env.base_url("payments")``, ``env.http_transport()``, ``env.httpx_client()``,
``env.stripe_http_client()``; see :mod:`tether.sim.wire.gateway` for how a request becomes a
call of a service under the scenario's faults.
"""

from tether.sim.wire.gateway import IN_PROCESS_ROOT, Face, Gateway, Route
from tether.sim.wire.messages import (
    BadRequestBody,
    ConnectionDropped,
    CredentialsExpired,
    InjectedStatus,
    WireRequest,
    WireResponse,
)

__all__ = [
    "IN_PROCESS_ROOT",
    "BadRequestBody",
    "ConnectionDropped",
    "CredentialsExpired",
    "Face",
    "Gateway",
    "InjectedStatus",
    "Route",
    "WireRequest",
    "WireResponse",
]
