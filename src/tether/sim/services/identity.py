"""An identity provider: access tokens that expire on the virtual clock, and refresh tokens.

Tools that stand for authenticated APIs call :meth:`Identity.check` with the caller's access
token, so "the auth token expires mid-session" happens on schedule: once the virtual clock
passes ``expires_at`` the call raises :class:`TokenExpired`, and the agent's refresh hook calls
:meth:`Identity.refresh` to carry on. With ``rotate_refresh_tokens`` each refresh also replaces
the refresh token (OAuth 2.1's rotation), so a refresh retried after a lost response fails with
:class:`TokenInvalid`, as it does in production.

It is also an OAuth2 authorization server for the client credentials grant (RFC 6749 §4.4):
the seed declares ``clients`` and :meth:`Identity.token` issues their access tokens, or refuses
with the RFC's error codes (:class:`OAuthError`). When clients are declared, the world's JSON
APIs on the wire require one of these tokens.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import ServiceError, TokenExpired, TokenInvalid
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["ClientToken", "Identity", "OAuthError", "TokenGrant", "TokenInfo"]

#: The status of each error code of RFC 6749 §5.2 (``invalid_client`` is 401: the client
#: failed to authenticate; the rest are 400).
OAUTH_ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400, "invalid_client": 401, "invalid_grant": 400,
    "unauthorized_client": 400, "unsupported_grant_type": 400, "invalid_scope": 400,
}


class OAuthError(ServiceError):
    """A token request refused with an RFC 6749 §5.2 ``error`` code and its description.

    >>> err = OAuthError("invalid_client", "client 'bot' is not registered")
    >>> err.status, err.to_oauth()["error"]
    (401, 'invalid_client')
    """

    def __init__(self, error: str, description: str) -> None:
        ServiceError.__init__(self, description, "identity", OAUTH_ERROR_STATUS.get(error, 400),
                              False)
        self.args = (error, description)
        self.error = error
        self.description = description

    def to_oauth(self) -> dict[str, Any]:
        """The token endpoint's JSON error body (RFC 6749 §5.2)."""
        return {"error": self.error, "error_description": self.description}

    def to_data(self) -> dict[str, Any]:
        """The generic fields plus the RFC's ``error`` code (as ``code``)."""
        return {**super().to_data(), "code": self.error}


class ClientToken(BaseModel):
    """An access token issued by the client credentials grant (no refresh token: RFC 6749
    §4.4.3). ``expires_in`` is whole seconds, rounded down so a client that trusts it never
    uses an expired token; ``expires_at`` is epoch seconds on the virtual clock."""

    model_config = ConfigDict(frozen=True)

    client: str
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    expires_at: float
    scope: str | None = None


class TokenGrant(BaseModel):
    """An OAuth-style token response; ``expires_at`` is epoch seconds on the virtual clock."""

    model_config = ConfigDict(frozen=True)

    client: str
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in_s: float
    expires_at: float


class TokenInfo(BaseModel):
    """What :meth:`Identity.check` learns about a valid access token."""

    model_config = ConfigDict(frozen=True)

    client: str
    expires_at: float
    #: The scopes granted to the token; empty: not restricted.
    scopes: tuple[str, ...] = ()


@dataclass
class _Access:
    client: str
    expires_at: float
    scopes: tuple[str, ...] = ()


@dataclass
class _Refresh:
    client: str
    expires_at: float | None
    active: bool = True


class _SeedGrant(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str
    access_token: str
    refresh_token: str
    expires_in_s: float


class _SeedClient(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    # No empty list: a token granted no scope is unrestricted, which a client declared with
    # no scopes must not get.
    scopes: list[str] | None = Field(default=None, min_length=1)


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_ttl_s: float = Field(default=3600.0, gt=0)
    refresh_ttl_s: float | None = Field(default=30 * 86_400.0, gt=0)
    rotate_refresh_tokens: bool = False
    grants: list[_SeedGrant] = Field(default_factory=list)
    clients: list[_SeedClient] = Field(default_factory=list)


class Identity:
    """Issues, checks and refreshes tokens on the virtual clock.

    ``seed_state`` (a seeded grant lets a scenario start with a token about to expire;
    ``refresh_ttl_s: null`` makes refresh tokens last forever; ``clients`` are OAuth2 clients
    of the client credentials grant, and a client's ``scopes``, when given, bound what its
    tokens may be granted — on the wire a scope names a service, ``crm``, ``email`` …)::

        {
            "access_ttl_s": 3600,
            "refresh_ttl_s": 2592000,
            "rotate_refresh_tokens": False,
            "grants": [{"client": "support-agent", "access_token": "at_seed",
                        "refresh_token": "rt_seed", "expires_in_s": 120}],
            "clients": [{"client_id": "support-agent", "client_secret": "s3cret",
                         "scopes": ["crm", "email"]}],
        }

    >>> world = World(seed=1)
    >>> identity = Identity(world, {"access_ttl_s": 60})
    >>> grant = identity.issue("support-agent")
    >>> world.clock.advance(60)
    >>> try:
    ...     identity.check(grant.access_token)
    ... except TokenExpired as exc:
    ...     print(exc.status, exc.client)
    401 support-agent
    >>> identity.check(identity.refresh(grant.refresh_token).access_token).client
    'support-agent'
    """

    #: The effects this service records in the world's ledger (``operation`` → field → the
    #: types its value can have): what a scenario's invariants may name and match on.
    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "issue": {"client": (str,), "access_token": (str,), "expires_at": (int, float)},
        "refresh": {"client": (str,), "access_token": (str,), "expires_at": (int, float),
                    "rotated": (bool,)},
    }

    #: What its clients may call (``env.client("identity")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = ("issue", "check", "refresh", "token")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(seed_state or {})
        self.access_ttl_s = seed.access_ttl_s
        self.refresh_ttl_s = seed.refresh_ttl_s
        self.rotate_refresh_tokens = seed.rotate_refresh_tokens
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access_ids = IdCounter("at_", [g.access_token for g in seed.grants])
        self._refresh_ids = IdCounter("rt_", [g.refresh_token for g in seed.grants])
        now = world.now()
        for g in seed.grants:
            if g.access_token in self._access or g.refresh_token in self._refresh:
                raise ValueError(f"identity seed: tokens of {g.client} repeat an earlier grant")
            self._access[g.access_token] = _Access(g.client, now + g.expires_in_s)
            self._refresh[g.refresh_token] = _Refresh(g.client, self._refresh_expiry(now))
        self._clients: dict[str, _SeedClient] = {}
        for c in seed.clients:
            if c.client_id in self._clients:
                raise ValueError(f"identity seed: client {c.client_id!r} is declared twice")
            self._clients[c.client_id] = c

    @property
    def clients(self) -> list[str]:
        """The ids of the OAuth2 clients the seed declares (none: the wire's APIs are open)."""
        return sorted(self._clients)

    def _refresh_expiry(self, now: float) -> float | None:
        return None if self.refresh_ttl_s is None else now + self.refresh_ttl_s

    def _grant(self, client: str, refresh_token: str) -> TokenGrant:
        now = self.world.now()
        access = self._access_ids.new()
        self._access[access] = _Access(client, now + self.access_ttl_s)
        return TokenGrant(client=client, access_token=access, refresh_token=refresh_token,
                          expires_in_s=self.access_ttl_s, expires_at=now + self.access_ttl_s)

    def issue(self, client: str) -> TokenGrant:
        """A new access and refresh token pair for ``client``."""
        refresh = self._refresh_ids.new()
        self._refresh[refresh] = _Refresh(client, self._refresh_expiry(self.world.now()))
        grant = self._grant(client, refresh)
        self.world.effect("identity", "issue", key=f"grant:{client}", client=client,
                          access_token=grant.access_token, expires_at=grant.expires_at)
        return grant

    def token(self, grant_type: str, client_id: str | None = None,
              client_secret: str | None = None, scope: str | None = None) -> ClientToken:
        """The token endpoint of the client credentials grant (RFC 6749 §4.4): a new access
        token for an authenticated client, expiring ``access_ttl_s`` later on the virtual
        clock. ``scope`` is space-delimited and must lie within the client's scopes (default:
        all of them). Refusals are :class:`OAuthError` with the RFC's codes:
        ``invalid_request``, ``unsupported_grant_type``, ``invalid_client`` (401),
        ``invalid_scope``."""
        if not grant_type:
            raise OAuthError("invalid_request", "the request is missing grant_type; send "
                             "grant_type=client_credentials")
        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not "
                             "supported; this server issues tokens for client_credentials")
        client = self._authenticate(client_id, client_secret)
        scopes = self._scopes(client, scope)
        now = self.world.now()
        access = self._access_ids.new()
        expires_at = now + self.access_ttl_s
        self._access[access] = _Access(client.client_id, expires_at, scopes)
        self.world.effect("identity", "issue", key=f"grant:{client.client_id}",
                          client=client.client_id, access_token=access, expires_at=expires_at)
        return ClientToken(client=client.client_id, access_token=access,
                           expires_in=math.floor(self.access_ttl_s), expires_at=expires_at,
                           scope=" ".join(scopes) or None)

    def _authenticate(self, client_id: str | None, client_secret: str | None) -> _SeedClient:
        if not client_id:
            raise OAuthError("invalid_client", "no client credentials: send client_id and "
                             "client_secret in the body or with HTTP Basic authentication")
        client = self._clients.get(client_id)
        if client is None:
            declared = ", ".join(self.clients) or "none (seed identity.clients)"
            raise OAuthError("invalid_client", f"client {client_id!r} is not registered; "
                             f"registered clients: {declared}")
        # Compared in constant time, as a real server does, though nothing here is secret.
        if not hmac.compare_digest((client_secret or "").encode(),
                                   client.client_secret.encode()):
            raise OAuthError("invalid_client", f"the secret of client {client_id!r} is wrong")
        return client

    def _scopes(self, client: _SeedClient, scope: str | None) -> tuple[str, ...]:
        asked = tuple(dict.fromkeys((scope or "").split()))
        if client.scopes is None:
            return asked
        if not asked:
            return tuple(client.scopes)
        beyond = [s for s in asked if s not in client.scopes]
        if beyond:
            raise OAuthError("invalid_scope", f"client {client.client_id!r} may not be granted "
                             f"{' '.join(beyond)}; its scopes are {' '.join(client.scopes)}")
        return asked

    def check(self, token: str) -> TokenInfo:
        """The client of a valid access ``token``; raises when it expired or is unknown."""
        access = self._access.get(token)
        if access is None:
            raise TokenInvalid(f"access token {token!r} was not issued by this provider")
        if self.world.now() >= access.expires_at:
            raise TokenExpired(f"access token of {access.client} expired at "
                               f"{access.expires_at:.0f}; refresh it and call again",
                               access.client, access.expires_at)
        return TokenInfo(client=access.client, expires_at=access.expires_at,
                         scopes=access.scopes)

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A new access token for the client of ``refresh_token`` (and, with rotation, a new
        refresh token: the old one stops working)."""
        entry = self._refresh.get(refresh_token)
        if entry is None or not entry.active:
            state = "was rotated away" if entry is not None else "was not issued here"
            raise TokenInvalid(f"refresh token {refresh_token!r} {state}; issue a new grant",
                               entry.client if entry is not None else "")
        now = self.world.now()
        if entry.expires_at is not None and now >= entry.expires_at:
            raise TokenInvalid(f"refresh token of {entry.client} expired at "
                               f"{entry.expires_at:.0f}; issue a new grant", entry.client)
        if self.rotate_refresh_tokens:
            entry.active = False
            refresh_token = self._refresh_ids.new()
            self._refresh[refresh_token] = _Refresh(entry.client, self._refresh_expiry(now))
        grant = self._grant(entry.client, refresh_token)
        self.world.effect("identity", "refresh", key=f"grant:{entry.client}",
                          client=entry.client, access_token=grant.access_token,
                          expires_at=grant.expires_at, rotated=self.rotate_refresh_tokens)
        return grant

    def expire(self, client: str) -> None:
        """Fault hook: every live access token of ``client`` expires now.

        A fault changes conditions, not business state, so it records no effect; the fault
        layer records its own firing.
        """
        now = self.world.now()
        for access in self._access.values():
            if access.client == client and access.expires_at > now:
                access.expires_at = now

    def snapshot(self) -> dict[str, Any]:
        """Canonical state: access and refresh tokens, by token."""
        return {
            # A scope is listed only when granted, so worlds without OAuth clients keep the
            # snapshot (and digests) they had before scopes existed.
            "access_tokens": {t: {"client": a.client, "expires_at": a.expires_at,
                                  **({"scope": " ".join(a.scopes)} if a.scopes else {})}
                              for t, a in sorted(self._access.items())},
            "refresh_tokens": {t: {"client": r.client, "expires_at": r.expires_at,
                                   "active": r.active} for t, r in sorted(self._refresh.items())},
        }
