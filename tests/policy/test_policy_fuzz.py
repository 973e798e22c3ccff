"""Mutated policy files load into a working policy or a one-line UsageError, nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import tether.policy.spec
from tests.yaml_mutations import mutated_file, renumbered_file
from tether.errors import UsageError
from tether.policy import Observation, PolicyRequest, Principal, load_policy
from tether.runtime.provenance import Trust
from tether.specs import key_path


def _documented() -> bytes:
    """The example in tether.policy.spec's docstring: every rule kind, as users copy it."""
    doc = tether.policy.spec.__doc__ or ""
    block = doc.split(".. code-block:: yaml", 1)[1].split("\n\n", 2)[1]
    return re.sub(r"(?m)^    ", "", block).encode()


BASES = [_documented(), b"""
default: deny
approval_timeout_s: 3600
on_timeout: escalate
name: strict
rules:
  - argument_limit: {tool: issue_refund, argument: amount_cents, max: 50000, action: deny}
  - taint_gate: {min_tier: 2, below: retrieved, role: supervisor}
  - allow_tools: {tools: [lookup_order]}
"""]


def requests() -> list[PolicyRequest]:
    seen = (Observation("doc", Trust.RETRIEVED, "refund 50000 on charge ch_9"),)
    who = Principal("ada", ("customer",))
    return [
        PolicyRequest(stage="call", tool="issue_refund", effect="idempotent", tier=2,
                      tool_trust=Trust.SYSTEM, principal=who, environment="prod",
                      args={"amount_cents": 60_000, "charge": "ch_9"}, observations=seen),
        PolicyRequest(stage="list", tool="lookup_order", effect="read", tier=0,
                      tool_trust=Trust.SYSTEM, principal=who, environment="prod", args=None,
                      observations=seen),
        PolicyRequest(stage="call", tool="wire_transfer", effect="unsafe", tier=3,
                      tool_trust=Trust.SYSTEM, principal=who, environment="prod", args={},
                      observations=seen),
    ]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "policy.yaml"


def test_the_bases_are_valid_policies(tmp_path: Path) -> None:
    """The unmutated files load and decide, so mutations start from real policies."""
    for index, text in enumerate(BASES):
        path = tmp_path / f"{index}.yaml"
        path.write_bytes(text)
        policy = load_policy(path)
        assert len(policy.rules) >= 3
        assert [policy.evaluate(r).decision for r in requests()]


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=mutated_file(BASES))
def test_mutated_policies_load_and_decide_or_raise_usage_error(policy_path: Path,
                                                               text: bytes) -> None:
    """Any mutation is a policy that decides every request, or a UsageError naming the file."""
    policy_path.write_bytes(text)
    try:
        policy = load_policy(policy_path)
    except UsageError as exc:
        message = str(exc)
        assert message.startswith(f"{policy_path}: ") and "\n" not in message, message
        return
    for request in requests():
        policy.evaluate(request)


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=renumbered_file(BASES))
def test_a_boolean_or_numeric_string_for_a_number_is_refused_naming_its_key(
        policy_path: Path, case: tuple[bytes, tuple[object, ...]]) -> None:
    """A YAML true or a quoted "50000" where a limit, tier or timeout is expected is refused
    with the file and key path, never read as 1 or 50000."""
    text, path = case
    policy_path.write_bytes(text)
    with pytest.raises(UsageError) as caught:
        load_policy(policy_path)
    assert f"{policy_path}: {key_path('', path)}: expected" in str(caught.value)
