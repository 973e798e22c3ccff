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
(``rules[2].argument_limit.max``), what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.errors import UsageError
from tether.policy import rules as r
from tether.policy.policy import Policy
from tether.runtime.provenance import Trust
from tether.specs import describe, explain, load_yaml, one_of

__all__ = ["load_policy", "policy_from_dict"]

Action = Literal["deny", "require_approval"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Tools(_Spec):
    tools: list[str]
    reason: str = ""


class _Allow(_Spec):
    tools: list[str]


class _Limit(_Spec):
    tool: str
    argument: str
    max: float
    action: Action = "require_approval"
    role: str = "approver"


class _Role(_Spec):
    role: str
    tools: list[str] = []
    min_tier: int | None = None


class _Env(_Spec):
    environments: list[str]
    tools: list[str] = []
    min_tier: int | None = None


class _Taint(_Spec):
    min_tier: int = 1
    below: Trust = Trust.USER
    action: Action = "require_approval"
    role: str = "approver"


class _Provenance(_Spec):
    min_tier: int = 1
    trusted_at_least: Trust = Trust.USER
    action: Action = "require_approval"
    role: str = "approver"
    require_support: bool = False
    min_length: int = 4


class _ControlFlow(_Spec):
    min_tier: int = 1
    below: Trust = Trust.USER
    action: Action = "deny"
    repeat_action: Action = "require_approval"
    role: str = "approver"
    repeats: bool = True
    min_length: int = 4


_KINDS: dict[str, tuple[type[_Spec], Callable[[Any], r.Rule]]] = {
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
    approval_timeout_s: float | None = None
    on_timeout: Literal["deny", "escalate"] = "deny"
    name: str = "policy"
    rules: list[dict[str, Any]] = []


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file."""
    data = load_yaml(path, "policy")
    return policy_from_dict(data if data is not None else {}, where=str(path))


def policy_from_dict(data: Any, *, where: str = "<policy>") -> Policy:
    """Build a policy from parsed YAML/JSON data (see the module docstring)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top, found {describe(data)}")
    try:
        top = _Top.model_validate(data)
    except ValidationError as exc:
        raise explain(where, "", exc) from exc
    built = []
    specs = {kind: spec_type for kind, (spec_type, _) in _KINDS.items()}
    for index, item in enumerate(top.rules):
        kind, spec = one_of(item, specs, where=where, at=f"rules[{index}]", noun="rule kind")
        build = _KINDS[kind][1]
        built.append(build(spec))
    return Policy(rules=tuple(built), default=top.default,
                  approval_timeout_s=top.approval_timeout_s, on_timeout=top.on_timeout,
                  name=top.name)
