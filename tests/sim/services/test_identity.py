"""Identity: token expiry on the virtual clock, refresh, rotation, fault hook, effects."""

from __future__ import annotations

import json
import pickle

import pytest
from pydantic import ValidationError

from tether.errors import error_record, rebuild_error
from tether.sim.services.errors import TokenExpired, TokenInvalid
from tether.sim.services.identity import Identity, OAuthError
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


# -- the client credentials grant (RFC 6749 §4.4) ------------------------------------------

CLIENTS = {"access_ttl_s": 600.5, "clients": [
    {"client_id": "desk", "client_secret": "s3cret"},
    {"client_id": "mailer", "client_secret": "m41l", "scopes": ["email", "crm"]}]}


def test_client_credentials_token_expires_on_the_virtual_clock(world: World) -> None:
    """token() issues a Bearer token that checks out until access_ttl_s passes, no refresh."""
    identity = Identity(world, CLIENTS)
    token = identity.token("client_credentials", "desk", "s3cret")
    assert (token.client, token.access_token, token.token_type, token.expires_in,
            token.expires_at, token.scope) == ("desk", "at_0001", "Bearer", 600,
                                               START + 600.5, None)
    assert identity.check(token.access_token).client == "desk"
    world.clock.advance(600.5)
    with pytest.raises(TokenExpired):
        identity.check(token.access_token)
    assert identity.token("client_credentials", "desk", "s3cret").access_token == "at_0002"
    assert [(e.operation, e.key) for e in world.ledger.of("identity")] == [
        ("issue", "grant:desk"), ("issue", "grant:desk")]


@pytest.mark.parametrize(("args", "error", "status"), [
    (("", "desk", "s3cret"), "invalid_request", 400),
    (("password", "desk", "s3cret"), "unsupported_grant_type", 400),
    (("client_credentials", None, None), "invalid_client", 401),
    (("client_credentials", "nobody", "s3cret"), "invalid_client", 401),
    (("client_credentials", "desk", "wrong"), "invalid_client", 401),
    (("client_credentials", "desk", None), "invalid_client", 401),
    (("client_credentials", "mailer", "m41l", "email calendar"), "invalid_scope", 400),
])
def test_token_refusals_follow_rfc_6749(world: World, args: tuple[str | None, ...], error: str,
                                        status: int) -> None:
    """Each refusal carries the RFC 6749 §5.2 code and status, and records no effect."""
    identity = Identity(world, CLIENTS)
    with pytest.raises(OAuthError) as info:
        identity.token(*args)  # type: ignore[arg-type]
    assert (info.value.error, info.value.status, info.value.to_oauth()["error"]) == (
        error, status, error)
    assert info.value.to_oauth()["error_description"]
    assert len(world.ledger) == 0


def test_scopes_are_bounded_by_the_client(world: World) -> None:
    """A client with scopes gets all of them by default, or the subset asked; checks show it."""
    identity = Identity(world, CLIENTS)
    every = identity.token("client_credentials", "mailer", "m41l")
    asked = identity.token("client_credentials", "mailer", "m41l", "crm")
    assert (every.scope, asked.scope) == ("email crm", "crm")
    assert identity.check(asked.access_token).scopes == ("crm",)
    assert identity.snapshot()["access_tokens"][asked.access_token]["scope"] == "crm"


def test_client_seed_validation(world: World) -> None:
    """A client declared twice, or with an empty scope list, is refused at seeding."""
    client = {"client_id": "a", "client_secret": "b"}
    with pytest.raises(ValueError, match="twice"):
        Identity(world, {"clients": [client, client]})
    with pytest.raises(ValidationError, match="scopes"):
        Identity(world, {"clients": [{**client, "scopes": []}]})
    assert Identity(world, {"clients": [client]}).clients == ["a"]


def test_oauth_error_round_trips_through_the_journal() -> None:
    """An OAuthError pickles and is rebuilt from its journal record with code and status."""
    err = OAuthError("invalid_scope", "client 'bot' may not be granted crm")
    for again in (pickle.loads(pickle.dumps(err)), rebuild_error(error_record(err))):
        assert isinstance(again, OAuthError)
        assert (again.error, again.description, again.status) == (
            "invalid_scope", err.description, 400)
