"""Governance: which tools an agent may see and call, on whose authority.

A prompt cannot create authorization; the runtime must. A :class:`Policy` is evaluated when the
agent decides which tools the model sees and again before each call; its verdicts (allow, deny
with a reason the model is shown, require approval by a role) are journaled. See
:mod:`tether.policy.rules` for the rules, :mod:`tether.policy.arguments` for argument
provenance, :mod:`tether.policy.control_flow` for keeping writes to what the trusted request
asked, and :mod:`tether.policy.spec` for the YAML form.
"""

from tether.policy.arguments import ArgumentFinding, trace_arguments
from tether.policy.policy import Policy
from tether.policy.request import (
    Decision,
    Observation,
    PolicyRequest,
    Principal,
    PriorCall,
    Verdict,
)
from tether.policy.rules import (
    Rule,
    allow_tools,
    argument_limit,
    argument_provenance,
    control_flow,
    deny_tools,
    environment_gate,
    predicate,
    require_role,
    taint_gate,
)
from tether.policy.spec import load_policy, policy_from_dict

__all__ = [
    "ArgumentFinding",
    "Decision",
    "Observation",
    "Policy",
    "PolicyRequest",
    "Principal",
    "PriorCall",
    "Rule",
    "Verdict",
    "allow_tools",
    "argument_limit",
    "argument_provenance",
    "control_flow",
    "deny_tools",
    "environment_gate",
    "load_policy",
    "policy_from_dict",
    "predicate",
    "require_role",
    "taint_gate",
    "trace_arguments",
]
