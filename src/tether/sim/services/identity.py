"""An identity provider: access tokens that expire on the virtual clock, and refresh tokens.

Tools that stand for authenticated APIs call :meth:`Identity.check` with the caller's access
token, so "the auth token expires mid-session" happens on schedule: once the virtual clock
passes ``expires_at`` the call raises :class:`TokenExpired`, and the agent's refresh hook calls
:meth:`Identity.refresh` to carry on. With ``rotate_refresh_tokens`` each refresh also replaces
the refresh token (OAuth 2.1's rotation), so a refresh retried after a lost response fails with
:class:`TokenInvalid`, as it does in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import TokenExpired, TokenInvalid
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["Identity", "TokenGrant", "TokenInfo"]


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


@dataclass
class _Access:
    client: str
    expires_at: float


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


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_ttl_s: float = Field(default=3600.0, gt=0)
    refresh_ttl_s: float | None = Field(default=30 * 86_400.0, gt=0)
    rotate_refresh_tokens: bool = False
    grants: list[_SeedGrant] = Field(default_factory=list)


class Identity:
    """Issues, checks and refreshes tokens on the virtual clock.

    ``seed_state`` (a seeded grant lets a scenario start with a token about to expire;
    ``refresh_ttl_s: null`` makes refresh tokens last forever)::

        {
            "access_ttl_s": 3600,
            "refresh_ttl_s": 2592000,
            "rotate_refresh_tokens": False,
            "grants": [{"client": "support-agent", "access_token": "at_seed",
                        "refresh_token": "rt_seed", "expires_in_s": 120}],
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
    OPERATIONS: ClassVar[tuple[str, ...]] = ("issue", "check", "refresh")

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

    def check(self, token: str) -> TokenInfo:
        """The client of a valid access ``token``; raises when it expired or is unknown."""
        access = self._access.get(token)
        if access is None:
            raise TokenInvalid(f"access token {token!r} was not issued by this provider")
        if self.world.now() >= access.expires_at:
            raise TokenExpired(f"access token of {access.client} expired at "
                               f"{access.expires_at:.0f}; refresh it and call again",
                               access.client, access.expires_at)
        return TokenInfo(client=access.client, expires_at=access.expires_at)

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
            "access_tokens": {t: {"client": a.client, "expires_at": a.expires_at}
                              for t, a in sorted(self._access.items())},
            "refresh_tokens": {t: {"client": r.client, "expires_at": r.expires_at,
                                   "active": r.active} for t, r in sorted(self._refresh.items())},
        }
