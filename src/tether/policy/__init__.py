"""Governance: which tools an agent may see and call, on whose authority.

A prompt cannot create authorization; the runtime must. A :class:`Policy` is evaluated when the
agent decides which tools the model sees and again before each call; its verdicts (allow, deny
with a reason the model is shown, require approval by a role) are journaled. See
:mod:`tether.policy.rules` for the rules, :mod:`tether.policy.arguments` for argument
provenance, :mod:`tether.policy.control_flow` for keeping writes to what the trusted request
asked, and :mod:`tether.policy.spec` for the YAML form.
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
    from tether.policy.arguments import ArgumentFinding, trace_arguments
    from tether.policy.policy import Policy, load_policy, policy_from_dict
    from tether.policy.request import (
        Observation,
        PolicyDecision,
        PolicyRequest,
        Principal,
        PriorCall,
        Verdict,
    )
    from tether.policy.rules import (
        PolicyRule,
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

__all__ = [
    "ArgumentFinding",
    "Observation",
    "Policy",
    "PolicyDecision",
    "PolicyRequest",
    "PolicyRule",
    "Principal",
    "PriorCall",
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

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "ArgumentFinding": "tether.policy.arguments",
    "Observation": "tether.policy.request",
    "Policy": "tether.policy.policy",
    "PolicyDecision": "tether.policy.request",
    "PolicyRequest": "tether.policy.request",
    "PolicyRule": "tether.policy.rules",
    "Principal": "tether.policy.request",
    "PriorCall": "tether.policy.request",
    "Verdict": "tether.policy.request",
    "allow_tools": "tether.policy.rules",
    "argument_limit": "tether.policy.rules",
    "argument_provenance": "tether.policy.rules",
    "control_flow": "tether.policy.rules",
    "deny_tools": "tether.policy.rules",
    "environment_gate": "tether.policy.rules",
    "load_policy": "tether.policy.policy",
    "policy_from_dict": "tether.policy.policy",
    "predicate": "tether.policy.rules",
    "require_role": "tether.policy.rules",
    "taint_gate": "tether.policy.rules",
    "trace_arguments": "tether.policy.arguments",
}

# The loader also keeps the rule ``control_flow`` under its name when the submodule
# :mod:`tether.policy.control_flow` of the same name is loaded (see tether._lazy).
if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    # The names before tether.Rule (the retry rule) and tether.events.Decision (the journal's
    # decision event) kept theirs: still importable, deprecated.
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__,
                                   renamed={"Rule": "PolicyRule", "Decision": "PolicyDecision"})
