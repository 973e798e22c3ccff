"""Governance: which tools an agent may see and call, on whose authority.

A prompt cannot create authorization; the runtime must. A :class:`Policy` is evaluated when the
agent decides which tools the model sees and again before each call; its verdicts (allow, deny
with a reason the model is shown, require approval by a role) are journaled. See
:mod:`tether.policy.rules` for the rules, :mod:`tether.policy.arguments` for argument
provenance, :mod:`tether.policy.control_flow` for keeping writes to what the trusted request
asked, and :mod:`tether.policy.spec` for the YAML form.
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
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

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "ArgumentFinding": "tether.policy.arguments",
    "Decision": "tether.policy.request",
    "Observation": "tether.policy.request",
    "Policy": "tether.policy.policy",
    "PolicyRequest": "tether.policy.request",
    "Principal": "tether.policy.request",
    "PriorCall": "tether.policy.request",
    "Rule": "tether.policy.rules",
    "Verdict": "tether.policy.request",
    "allow_tools": "tether.policy.rules",
    "argument_limit": "tether.policy.rules",
    "argument_provenance": "tether.policy.rules",
    "control_flow": "tether.policy.rules",
    "deny_tools": "tether.policy.rules",
    "environment_gate": "tether.policy.rules",
    "load_policy": "tether.policy.spec",
    "policy_from_dict": "tether.policy.spec",
    "predicate": "tether.policy.rules",
    "require_role": "tether.policy.rules",
    "taint_gate": "tether.policy.rules",
    "trace_arguments": "tether.policy.arguments",
}


class _Package(types.ModuleType):
    """This package, keeping the rule :func:`control_flow` under its name: the import system
    sets a submodule as an attribute of its package when it loads it, and
    :mod:`tether.policy.control_flow` would otherwise replace the function it exports."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there

    def __getattr__(name: str) -> object:
        module = _WHERE.get(name)
        if module is not None:
            # __import__, as the import statement does (importlib.import_module would hide
            # the module from ``python -X importtime``)
            __import__(module)
            value = getattr(sys.modules[module], name)
            globals()[name] = value  # later lookups skip this function
            return value
        if not name.startswith("_"):  # ``package.submodule``, as eager imports used to allow
            try:
                __import__(f"{__name__}.{name}")
                return sys.modules[f"{__name__}.{name}"]
            except ModuleNotFoundError as e:
                if e.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
