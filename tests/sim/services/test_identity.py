"""Identity: token expiry on the virtual clock, refresh, rotation, fault hook, effects."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tether.sim.services.errors import TokenExpired, TokenInvalid
from tether.sim.services.identity import Identity
from tether.sim.world import World

from .conftest import DAY_S, START


def test_issue_and_check(world: World) -> None:
    """An issued token checks out for its client until it expires."""
    identity = Identity(world, {"access_ttl_s": 600})
    grant = identity.issue("support-agent")
    assert (grant.access_token, grant.refresh_token, grant.token_type, grant.expires_in_s,
            grant.expires_at) == ("at_0001", "rt_0001", "Bearer", 600, START + 600)
    world.clock.advance(599)
    info = identity.check(grant.access_token)
    assert (info.client, info.expires_at) == ("support-agent", START + 600)


def test_token_expires_on_the_virtual_clock(world: World) -> None:
    """At its expiry instant the token raises TokenExpired (401) with client and time."""
    identity = Identity(world, {"access_ttl_s": 600})
    grant = identity.issue("support-agent")
    world.clock.advance(600)
    with pytest.raises(TokenExpired) as info:
        identity.check(grant.access_token)
    assert (info.value.status, info.value.client, info.value.expired_at) == (
        401, "support-agent", START + 600)
    assert "refresh" in str(info.value)


def test_refresh_renews_access(world: World) -> None:
    """Refreshing an expired session gives a new valid access token; the refresh token stays."""
    identity = Identity(world, {"access_ttl_s": 60})
    grant = identity.issue("bot")
    world.clock.advance(90)
    renewed = identity.refresh(grant.refresh_token)
    assert renewed.access_token != grant.access_token
    assert renewed.refresh_token == grant.refresh_token
    assert identity.check(renewed.access_token).expires_at == START + 150
    assert identity.refresh(grant.refresh_token).access_token == "at_0003"


def test_rotation_retires_the_old_refresh_token(world: World) -> None:
    """With rotation, a refresh replaces the refresh token and the old one is refused."""
    identity = Identity(world, {"rotate_refresh_tokens": True})
    grant = identity.issue("bot")
    renewed = identity.refresh(grant.refresh_token)
    assert renewed.refresh_token == "rt_0002"
    with pytest.raises(TokenInvalid, match="rotated"):
        identity.refresh(grant.refresh_token)
    assert identity.refresh(renewed.refresh_token).refresh_token == "rt_0003"


def test_refresh_tokens_expire(world: World) -> None:
    """A refresh token past its lifetime is refused; a null lifetime never expires."""
    identity = Identity(world, {"refresh_ttl_s": DAY_S})
    forever = Identity(world, {"refresh_ttl_s": None})
    grant, lasting = identity.issue("bot"), forever.issue("bot")
    world.clock.advance(DAY_S)
    with pytest.raises(TokenInvalid, match="expired"):
        identity.refresh(grant.refresh_token)
    world.clock.advance(365 * DAY_S)
    assert forever.refresh(lasting.refresh_token).client == "bot"


def test_unknown_tokens_are_invalid(world: World) -> None:
    """Tokens never issued are TokenInvalid, not TokenExpired."""
    identity = Identity(world)
    for call in (identity.check, identity.refresh):
        with pytest.raises(TokenInvalid) as info:
            call("forged")
        assert not isinstance(info.value, TokenExpired) and info.value.status == 401


def test_seeded_grant_expires_mid_session(world: World) -> None:
    """A seeded grant lets a scenario start with a token about to expire."""
    identity = Identity(world, {"grants": [{"client": "bot", "access_token": "at_seed",
                                            "refresh_token": "rt_seed", "expires_in_s": 30}]})
    assert identity.check("at_seed").client == "bot"
    world.clock.advance(30)
    with pytest.raises(TokenExpired):
        identity.check("at_seed")
    assert identity.check(identity.refresh("rt_seed").access_token).client == "bot"


def test_expire_hook_records_nothing(world: World) -> None:
    """The fault hook expires a client's live tokens now, leaving other clients alone."""
    identity = Identity(world)
    mine, theirs = identity.issue("bot"), identity.issue("other")
    before = len(world.ledger)
    world.clock.advance(1)
    identity.expire("bot")
    with pytest.raises(TokenExpired) as info:
        identity.check(mine.access_token)
    assert info.value.expired_at == START + 1
    assert identity.check(theirs.access_token).client == "other"
    assert len(world.ledger) == before


def test_effects(world: World) -> None:
    """Issuing and refreshing record effects keyed by client; checking records nothing."""
    identity = Identity(world)
    grant = identity.issue("bot")
    identity.check(grant.access_token)
    identity.refresh(grant.refresh_token)
    assert [(e.operation, e.key) for e in world.ledger.of("identity")] == [
        ("issue", "grant:bot"), ("refresh", "grant:bot")]


def test_seed_validation(world: World) -> None:
    """Unknown fields and repeated tokens in a seed are refused."""
    with pytest.raises(ValidationError, match="access_ttl"):
        Identity(world, {"access_ttl": 5})
    grant = {"client": "a", "access_token": "t", "refresh_token": "r", "expires_in_s": 5}
    with pytest.raises(ValueError, match="repeat"):
        Identity(world, {"grants": [grant, grant]})


def test_snapshot() -> None:
    """The snapshot lists tokens by token as canonical JSON, identical across runs."""
    def run() -> str:
        world = World(seed=9)
        identity = Identity(world, {"rotate_refresh_tokens": True})
        identity.refresh(identity.issue("bot").refresh_token)
        return json.dumps(identity.snapshot(), sort_keys=True)

    snap = json.loads(run())
    assert snap["refresh_tokens"]["rt_0001"]["active"] is False
    assert list(snap["access_tokens"]) == ["at_0001", "at_0002"]
    assert run() == run()
