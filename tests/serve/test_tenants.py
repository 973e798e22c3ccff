"""API keys are stored hashed and name a tenant, principal and roles; ids map both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tether.cli import app
from tether.errors import UsageError
from tether.serve.tenants import KeyFile, KeyRing, key_hash, public_id, session_of_run, stored_id
from tether.sessions.state import stream_id, turn_run_id

_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)


@settings(max_examples=60)
@given(_NAMES, _NAMES, _NAMES, st.integers(1, 10_000))
def test_turn_runs_map_back_to_their_tenant_only(tenant: str, other: str, sid: str,
                                                 number: int) -> None:
    """A turn run of tenant T's session maps back to that session for T and to nothing for
    any other tenant; the stored id maps back to the public one."""
    stored = stored_id(tenant, sid)
    assert public_id(tenant, stored) == sid
    run_id = turn_run_id(stored, number)
    assert session_of_run(tenant, run_id) == stored
    if other != tenant:
        assert session_of_run(other, run_id) is None
    assert session_of_run(tenant, stream_id(stored)) is None  # the session's own stream


@pytest.mark.parametrize("sid", ["", "a.b", "a:b", "a/b", "x" * 129, "ü"])
def test_session_ids_that_could_cross_tenants_are_refused(sid: str) -> None:
    """A session id with the separator, ':' or other characters is refused, so no stored id
    of one tenant can be spelled by another."""
    with pytest.raises(UsageError):
        stored_id("acme", sid)


def test_keys_file_keeps_hashes_only_and_round_trips(tmp_path: Path) -> None:
    """Saved and loaded, the ring identifies the key's principal; the file holds its sha256,
    never the key, and is readable by its owner only."""
    path = tmp_path / "keys.yaml"
    ring = KeyRing()
    ring.add("tk_secret-key-0123456789abc", tenant="acme", principal="grace",
             roles=["supervisor"])
    ring.save(path)
    text = path.read_text()
    assert "tk_secret" not in text and key_hash("tk_secret-key-0123456789abc") in text
    assert path.stat().st_mode & 0o077 == 0
    who = KeyRing.load(path).identify("tk_secret-key-0123456789abc")
    assert who is not None and (who.tenant, who.principal, who.roles) == (
        "acme", "grace", frozenset({"supervisor"}))
    assert KeyRing.load(path).identify("tk_secret-key-0123456789abd") is None


@pytest.mark.parametrize("text", ["keys: 3", "[1]", "keys: [{tenant: a, principal: b, "
                                  "hash: md5}]", "keys: [{tenant: 'a.b', principal: b, hash: "
                                  "'sha256:" + "0" * 64 + "'}]", "keys: [{roles: x}]", "{{"])
def test_a_bad_keys_file_is_a_usage_error_naming_it(tmp_path: Path, text: str) -> None:
    """A keys file of the wrong shape, a bad hash or name is refused, naming the file."""
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match="keys file"):
        KeyRing.load(path)


def test_keys_add_prints_a_new_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    """`tether serve keys add` prints a fresh key on stdout; the file gets its hash, tenant,
    principal and roles; two keys are different."""
    path = tmp_path / "keys.json"
    runner = CliRunner()
    args = ["serve", "keys", "add", "--tenant", "acme", "--principal", "grace", "--role",
            "supervisor", "--keys", str(path)]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    key1, key2 = first.stdout.strip(), second.stdout.strip()
    assert key1.startswith("tk_") and len(key1) > 40 and key1 != key2
    ring = KeyRing.load(path)
    assert len(ring) == 2 and key1 not in path.read_text()
    who = ring.identify(key1)
    assert who is not None and who.by == "grace@acme" and who.roles == {"supervisor"}


def test_a_served_keys_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    """A key added to (or removed from) the keys file counts from the next request without a
    restart; a version of the file that does not load leaves the keys as they were and says
    why; a deleted file holds no key."""
    path = tmp_path / "keys.yaml"
    first, second = "tk_first-key-0000000000000", "tk_second-key-000000000000"
    ring = KeyRing()
    ring.add(first, tenant="acme", principal="ada")
    ring.save(path)
    served = KeyFile(path)
    assert served.identify(first) is not None and served.identify(second) is None
    ring.add(second, tenant="acme", principal="grace", roles=["supervisor"])
    ring.save(path)
    found = served.identify(second)
    assert found is not None and found.roles == frozenset({"supervisor"})
    path.write_text("keys: [not a mapping]\n")
    assert served.identify(second) is not None  # the broken version is not taken
    assert served.problem is not None and "keys[0]" in served.problem
    only = KeyRing()
    only.add(second, tenant="acme", principal="grace")
    only.save(path)
    assert served.identify(first) is None and served.identify(second) is not None
    assert served.problem is None
    path.unlink()
    assert served.identify(second) is None
