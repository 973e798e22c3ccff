"""Policies as YAML files, validated with errors that say where and what.

.. code-block:: yaml

    default: allow                 # or deny: what applies when no rule has an opinion
    approval_timeout_s: 86400      # how long a held call waits (run clock); omit for ever
    on_timeout: escalate           # or deny
    rules:
      - deny_tools: {tools: [wire_transfer]}
      - argument_limit: {tool: issue_refund, argument: amount_cents, max: 50000,
                         role: supervisor}
      - require_role: {role: support_lead, tools: [close_account]}
      - environment_gate: {environments: [sim, staging], min_tier: 2}
      - taint_gate: {min_tier: 1, below: user, action: require_approval, role: supervisor}
      - argument_provenance: {min_tier: 1, action: deny}
      - control_flow: {min_tier: 1, action: deny, repeat_action: require_approval}
      - allow_tools: {tools: [lookup_order, issue_refund]}

Each rule is a mapping with one key, the rule's kind, whose value holds its settings. A file
that does not fit raises :class:`~tether.errors.UsageError` naming the file, the path inside it
(``rules[2].argument_limit.max``), what was expected and what was found. Numbers are finite and
bounded (tiers 0–1000, ``approval_timeout_s`` at most :data:`MAX_TIMEOUT_S`), and numbers are
numbers: ``max: true`` or ``max: "50000"`` is refused, never read as 1 or 50000.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import UsageError
from tether.policy import rules as r
from tether.policy.request import PolicyAction
from tether.runtime.provenance import Trust
from tether.specs import StrictNumbers, describe, explain, load_yaml, one_of

__all__ = ["MAX_TIMEOUT_S", "policy_settings", "read_policy_settings"]



#: The longest approval wait a policy may set, in seconds (ten years; omit it to wait for ever).
MAX_TIMEOUT_S = 10 * 366 * 86_400.0


class _Spec(StrictNumbers, BaseModel):
    # inf and nan are never a meaningful limit or timeout: refused for every float field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Tools(_Spec):
    tools: list[str]
    reason: str = ""


class _Allow(_Spec):
    tools: list[str]


class _Limit(_Spec):
    tool: str
    argument: str
    max: float
    action: PolicyAction = "require_approval"
    role: str = "approver"


class _Role(_Spec):
    role: str
    tools: list[str] = []
    min_tier: int | None = Field(default=None, ge=0, le=1_000)


class _Env(_Spec):
    environments: list[str]
    tools: list[str] = []
    min_tier: int | None = Field(default=None, ge=0, le=1_000)


class _Taint(_Spec):
    min_tier: int = Field(default=1, ge=0, le=1_000)
    below: Trust = Trust.USER
    action: PolicyAction = "require_approval"
    role: str = "approver"


class _Provenance(_Spec):
    min_tier: int = Field(default=1, ge=0, le=1_000)
    trusted_at_least: Trust = Trust.USER
    action: PolicyAction = "require_approval"
    role: str = "approver"
    require_support: bool = False
    min_length: int = Field(default=4, ge=1, le=10_000)


class _ControlFlow(_Spec):
    min_tier: int = Field(default=1, ge=0, le=1_000)
    below: Trust = Trust.USER
    action: PolicyAction = "deny"
    repeat_action: PolicyAction = "require_approval"
    role: str = "approver"
    repeats: bool = True
    min_length: int = Field(default=4, ge=1, le=10_000)


_KINDS: dict[str, tuple[type[_Spec], Callable[[Any], r.PolicyRule]]] = {
    "deny_tools": (_Tools, lambda s: r.deny_tools(s.tools, s.reason)),
    "allow_tools": (_Allow, lambda s: r.allow_tools(s.tools)),
    "argument_limit": (_Limit, lambda s: r.argument_limit(s.tool, s.argument, s.max,
                                                          action=s.action, role=s.role)),
    "require_role": (_Role, lambda s: r.require_role(s.role, tools=s.tools,
                                                     min_tier=s.min_tier)),
    "environment_gate": (_Env, lambda s: r.environment_gate(s.environments, tools=s.tools,
                                                            min_tier=s.min_tier)),
    "taint_gate": (_Taint, lambda s: r.taint_gate(min_tier=s.min_tier, below=s.below,
                                                  action=s.action, role=s.role)),
    "argument_provenance": (_Provenance, lambda s: r.argument_provenance(
        min_tier=s.min_tier, trusted_at_least=s.trusted_at_least, action=s.action,
        role=s.role, require_support=s.require_support, min_length=s.min_length)),
    "control_flow": (_ControlFlow, lambda s: r.control_flow(
        min_tier=s.min_tier, below=s.below, action=s.action, repeat_action=s.repeat_action,
        role=s.role, repeats=s.repeats, min_length=s.min_length)),
}


class _Top(_Spec):
    default: Literal["allow", "deny"] = "allow"
    approval_timeout_s: float | None = Field(default=None, ge=0.0, le=MAX_TIMEOUT_S)
    on_timeout: Literal["deny", "escalate"] = "deny"
    name: str = Field(default="policy", max_length=200)
    rules: list[Any] = []


def read_policy_settings(path: str | Path) -> dict[str, Any]:
    """Read and validate a policy file: the keyword arguments of
    :class:`~tether.policy.policy.Policy` it describes (``Policy.from_yaml`` and
    :func:`~tether.policy.policy.load_policy` build the policy)."""
    data = load_yaml(path, "policy")
    return policy_settings(data if data is not None else {}, where=str(path))


def policy_settings(data: Any, *, where: str = "<policy>") -> dict[str, Any]:
    """Validate parsed YAML/JSON policy data (see the module docstring): the keyword
    arguments of the :class:`~tether.policy.policy.Policy` it describes, rules built."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top, found {describe(data)}")
    try:
        top = _Top.model_validate(data)
    except ValidationError as exc:
        raise explain(where, "", exc, _Top) from exc
    built = []
    specs = {kind: spec_type for kind, (spec_type, _) in _KINDS.items()}
    for index, item in enumerate(top.rules):
        kind, spec = one_of(item, specs, where=where, at=f"rules[{index}]", noun="rule kind")
        build = _KINDS[kind][1]
        try:
            built.append(build(spec))
        except (ValueError, TypeError) as exc:
            # A rule's own check of settings that passed the schema (say, an unknown trust).
            raise UsageError(f"{where}: rules[{index}].{kind}: {exc}") from exc
    return {"rules": tuple(built), "default": top.default,
            "approval_timeout_s": top.approval_timeout_s, "on_timeout": top.on_timeout,
            "name": top.name}
