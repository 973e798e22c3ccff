"""Policy rules: small wrappers, each one concern, composable in a :class:`~tether.policy.Policy`.

A rule is any callable ``(PolicyRequest) -> Verdict | None``; ``None`` means "no opinion". The
built-ins below cover the common cases and are what the YAML form builds; :func:`predicate`
wraps a function for the rare case.

>>> rule = argument_limit("refund", "amount_cents", 50_000, role="supervisor")
>>> rule.name
'argument_limit(refund.amount_cents > 50000)'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tether.policy.arguments import trace_arguments
from tether.policy.control_flow import check_control_flow
from tether.policy.request import PolicyAction, PolicyRequest, Verdict
from tether.runtime.provenance import Trust

__all__ = [
    "PolicyRule",
    "allow_tools",
    "argument_limit",
    "argument_provenance",
    "control_flow",
    "deny_tools",
    "environment_gate",
    "predicate",
    "require_role",
    "taint_gate",
]


@dataclass(frozen=True)
class PolicyRule:
    """A named check. ``check`` returns a verdict or ``None``. ``calls_only`` marks a rule that
    has no opinion when tools are listed (it needs the call's arguments), so the listing stage
    can skip it."""

    name: str
    check: Callable[[PolicyRequest], Verdict | None]
    calls_only: bool = False

    def __call__(self, request: PolicyRequest) -> Verdict | None:
        verdict = self.check(request)
        if verdict is not None and not verdict.rule:
            verdict = Verdict(verdict.decision, verdict.reason, verdict.role, self.name,
                              verdict.sources)
        return verdict


def _act(action: PolicyAction, reason: str, role: str, sources: Iterable[str] = ()) -> Verdict:
    if action == "deny":
        return Verdict.deny(reason, sources=tuple(sources))
    return Verdict.require_approval(reason, role=role, sources=tuple(sources))


def deny_tools(tools: Iterable[str], reason: str = "") -> PolicyRule:
    """These tools are never called."""
    names = frozenset(tools)
    return PolicyRule(f"deny_tools({', '.join(sorted(names))})", lambda r: Verdict.deny(
        reason or f"tool {r.tool!r} is not allowed") if r.tool in names else None)


def allow_tools(tools: Iterable[str]) -> PolicyRule:
    """Only these tools may be called (an allow list): any other tool is denied."""
    names = frozenset(tools)
    return PolicyRule(f"allow_tools({', '.join(sorted(names))})", lambda r: None if r.tool in names
                else Verdict.deny(f"tool {r.tool!r} is not on the allow list"))


def argument_limit(tool: str, argument: str, maximum: float, *,
                   action: PolicyAction = "require_approval", role: str = "approver") -> PolicyRule:
    """A call of ``tool`` whose ``argument`` exceeds ``maximum`` is held (or denied)."""
    def check(r: PolicyRequest) -> Verdict | None:
        if r.stage != "call" or r.tool != tool or r.args is None:
            return None
        value = r.args.get(argument)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > maximum:
            return _act(action, f"{tool}.{argument} = {value:,} is above the limit of "
                        f"{maximum:,}", role)
        return None

    return PolicyRule(f"argument_limit({tool}.{argument} > {maximum:g})", check, calls_only=True)


def require_role(role: str, *, tools: Iterable[str] = (),
                 min_tier: int | None = None) -> PolicyRule:
    """Only principals holding ``role`` may call these tools (by name, or all tools at or above
    ``min_tier``); others are denied."""
    names = frozenset(tools)

    def check(r: PolicyRequest) -> Verdict | None:
        covered = r.tool in names or (min_tier is not None and r.tier >= min_tier)
        if covered and not r.principal.has(role):
            return Verdict.deny(f"tool {r.tool!r} needs role {role!r}; {r.principal.id!r} "
                                f"has {list(r.principal.roles) or 'none'}")
        return None

    scope = ", ".join(sorted(names)) or f"tier >= {min_tier}"
    return PolicyRule(f"require_role({role}: {scope})", check)


def environment_gate(environments: Iterable[str], *, tools: Iterable[str] = (),
                     min_tier: int | None = None) -> PolicyRule:
    """These tools (by name or tier) may be called only in the given environments."""
    allowed, names = frozenset(environments), frozenset(tools)

    def check(r: PolicyRequest) -> Verdict | None:
        covered = r.tool in names or (min_tier is not None and r.tier >= min_tier)
        if covered and r.environment not in allowed:
            return Verdict.deny(f"tool {r.tool!r} is not enabled in {r.environment!r} "
                                f"(only {', '.join(sorted(allowed))})")
        return None

    return PolicyRule(f"environment_gate({', '.join(sorted(allowed))})", check)


def taint_gate(*, min_tier: int = 1, below: Trust | str = Trust.USER,
               action: PolicyAction = "require_approval", role: str = "approver") -> PolicyRule:
    """Once content trusted less than ``below`` is in the context, tools of tier ``min_tier``
    and above are held for approval (or denied). The verdict names the tainting sources."""
    floor = Trust(below)

    def check(r: PolicyRequest) -> Verdict | None:
        if r.tier < min_tier:
            return None
        tainted = r.untrusted(floor)
        if not tainted:
            return None
        sources = tuple(dict.fromkeys(f"{o.source} ({o.trust.value})" for o in tainted))
        if r.stage == "list" and action == "require_approval":
            return None  # stays visible; the call itself will be held
        return _act(action, f"untrusted content is in the context: {', '.join(sources)}; "
                    f"{r.tool!r} is consequential (tier {r.tier})", role, sources)

    return PolicyRule(f"taint_gate(tier >= {min_tier}, below {floor.value})", check)


def argument_provenance(*, min_tier: int = 1, trusted_at_least: Trust | str = Trust.USER,
                        action: PolicyAction = "require_approval", role: str = "approver",
                        require_support: bool = False, min_length: int = 4) -> PolicyRule:
    """A consequential call whose argument values appear only in untrusted content (or, with
    ``require_support``, nowhere in the context) is held or denied. See
    :mod:`tether.policy.arguments` for how values are matched and what this cannot catch."""
    def check(r: PolicyRequest) -> Verdict | None:
        if r.stage != "call" or r.tier < min_tier or not r.args:
            return None
        findings = trace_arguments(r.args, r.observations, trusted_at_least=trusted_at_least,
                                   min_length=min_length)
        flagged = [f for f in findings if f.untrusted_only or (require_support and f.unsupported)]
        if not flagged:
            return None
        parts: list[str] = []
        sources: list[str] = []
        for f in flagged:
            if f.untrusted_only:
                parts.append(f"{f.path}={f.value!r} appears only in "
                             f"{', '.join(f.untrusted_sources)}")
                sources.extend(f.untrusted_sources)
            else:
                parts.append(f"{f.path}={f.value!r} appears in no trusted source")
        return _act(action, "; ".join(parts), role, dict.fromkeys(sources))

    return PolicyRule(f"argument_provenance(tier >= {min_tier})", check, calls_only=True)


def control_flow(*, min_tier: int = 1, below: Trust | str = Trust.USER,
                 action: PolicyAction = "deny", repeat_action: PolicyAction = "require_approval",
                 role: str = "approver", repeats: bool = True, min_length: int = 4) -> PolicyRule:
    """Once content trusted less than ``below`` is in the context, a consequential call whose
    control flow did not come from the trusted request is refused or held: a value untrusted
    content named and the request did not, or chose among named alternatives where the request
    named another (``action``), a candidate the request names without singling it out and
    untrusted content names (always held for approval), or a second write of one tool whose
    new values the request did not name (``repeat_action``; ``repeats=False`` turns this off
    for agents that legitimately repeat a write). See :mod:`tether.policy.control_flow`.

    The defaults refuse steered values outright: the fact that decides (who named the value)
    is already known, an approver shown a plausible call on a real target for a real amount
    adds nothing but a chance to wave it through, and the model is told why — it can ask the
    user, whose answer is part of the request. A repeat is held instead, because the request
    may well have asked for two ("refund both items") and only a person can tell."""
    floor = Trust(below)

    def check(r: PolicyRequest) -> Verdict | None:
        if r.tier < min_tier:
            return None
        findings = check_control_flow(r, below=floor, min_length=min_length, repeats=repeats)
        if not findings:
            return None
        steered = [f for f in findings if f.kind in ("steered", "selected")]
        ambiguous = any(f.kind == "ambiguous" for f in findings)
        # Which of the candidates the user named was meant, only a person can tell: held.
        chosen = action if steered else "require_approval" if ambiguous else repeat_action
        sources = dict.fromkeys(s for f in findings for s in f.sources)
        reason = "; ".join(f.describe() for f in findings)
        return _act(chosen, f"{reason} — the writes an agent makes, their targets and amounts "
                    "come from the user's request, not from retrieved or external content",
                    role, sources)

    return PolicyRule(f"control_flow(tier >= {min_tier}, below {floor.value})", check,
                calls_only=True)


def predicate(name: str, fn: Callable[[PolicyRequest], Verdict | None]) -> PolicyRule:
    """Any function of the request, for what the built-ins do not express."""
    return PolicyRule(name, fn)
