"""Scenario files: the world's seeded state, the task, faults, budgets and invariants.

.. code-block:: yaml

    name: refund-timeout-after-commit
    description: The payments API commits the refund, then the response times out.
    agent: refund                       # a short name, package.module:function, or file.py:fn
    variables: {plan: pro}              # for a YAML agent (agent: agent.yaml): its variables
    task: "My order ch_0001 arrived broken; please refund it."
    principal: {id: ada, roles: [customer]}
    persona: {name: Ada, goal: "get a refund", changes_mind_at: 3, new_request: "..."}
    knobs: {sloppy: 0.0, gullible: 0.0}
    world:                              # seed state per service (see tether.sim.services)
      payments: {customers: [...], charges: [...]}
      crm: {...}
    faults:
      - {kind: timeout_after, target: payments.create_refund, on_call: [1]}
    budgets: {max_steps: 20}
    model: own                          # or {script: pkg.mod:fn} | {replay: [...]}
    user: {played_by: persona}          # or a model-played user (tether.sim.users)
    policy: policies/refunds.yaml       # rules the story needs, added to the agent's own
    approver: {default: trusted, deny_tools: [wire_transfer]}
    success:                            # what the task asked: the episode is done when all hold
      - exactly_once: {effect: payments.refund, match: {charge: ch_0001, amount: 4999}}
    invariants:
      - exactly_once: {effect: payments.refund}
      - at_most: {effect: email.send, n: 1}
      - at_most_each: {effect: email.send, n: 1, keys: {"email:ada@example.com:Reminder": 2}}
      - never_without_approval: {effect: payments.payout}
      - never: {effect: payments.refund, match: {amount: 500000}}
      - final_state: {service: crm, path: tickets.T-1.status, equals: closed}
      - python: {function: "mypackage.checks:no_duplicate_emails"}

``agent`` names the agent under test (see :mod:`tether.sim.agent_ref`): the factory receives
the simulated :class:`~tether.sim.environment.Environment` and returns the agent. Relative
paths (an agent file, a policy file) are relative to the scenario's folder.

A file that does not fit raises :class:`~tether.errors.UsageError` naming the file, the key path
and what was expected, before anything runs. Everything an episode's cost depends on is bounded
at load — counts by :data:`MAX_COUNT` (``max_steps`` by :data:`MAX_STEPS`, ``patience`` by
:data:`MAX_PATIENCE`), virtual times by :data:`MAX_SECONDS`, every number is finite and within
:data:`MAX_NUMBER` — and the seeded world is checked by building each service from it, so a
scenario that loads runs.

Numbers are numbers: a boolean (``true``) or a numeric string (``"25"``) where a count, an
amount, a time or a probability is expected is refused, in the typed fields and in the seeded
world alike (ISO 8601 strings stay the form of dates). An invariant's or success check's
``effect`` must be one the world records (:data:`EFFECTS`, or a bare service name for all of
its operations), and its ``match`` keys fields that effect carries, with values of their type
(``amount: 4999``, not ``"4999"``): a check that could never match would hold, or fail,
whatever the agent did. ``python:`` invariants are free-form.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from tether.errors import UsageError
from tether.policy.policy import Policy
from tether.sim.bounds import (
    MAX_COUNT,
    MAX_NUMBER,
    MAX_PATIENCE,
    MAX_SECONDS,
    MAX_STEPS,
    StrictSpec,
)
from tether.sim.faults import FAULT_KINDS, WEBHOOK_KINDS, WEBHOOK_TARGET, Fault, FaultPlan
from tether.sim.persona_spec import Persona
from tether.sim.recorded import (
    RECORDED_FIELDS,
    RECORDED_SERVICE,
    recorded_effects,
    recording_from_dict,
)
from tether.sim.services import CRM, Calendar, Email, Identity, KnowledgeBase, Payments
from tether.sim.services.memory import AgentMemory
from tether.sim.world import World
from tether.specs import describe, explain, load_yaml, one_of, short_repr

__all__ = [
    "EFFECTS",
    "MAX_COUNT",
    "MAX_NUMBER",
    "MAX_PATIENCE",
    "MAX_SECONDS",
    "MAX_STEPS",
    "SERVICES",
    "FaultSpec",
    "Invariant",
    "Persona",
    "Scenario",
    "check_effect_settings",
    "check_from_dict",
    "load_scenario",
    "scenario_from_dict",
    "scenario_policy",
    "scenario_policy_tools",
]

#: The services a scenario's ``world`` may seed, by name.
SERVICES: dict[str, Callable[[World, Any], object]] = {
    "payments": Payments, "crm": CRM, "email": Email, "kb": KnowledgeBase,
    "calendar": Calendar, "identity": Identity, "memory": AgentMemory,
}


#: Every effect a scenario's world can record, ``service.operation`` → field → the types its
#: value can have: the services' own ``EFFECTS`` registries and the simulated user's message.
EFFECTS: dict[str, dict[str, tuple[type, ...]]] = {
    **{f"{name}.{operation}": fields
       for name, service in SERVICES.items()
       for operation, fields in service.EFFECTS.items()},  # type: ignore[attr-defined]
    "user.message": {"turn": (int,), "text": (str,), "question": (str,)},
}


class _Spec(StrictSpec, BaseModel):
    """The sections of a scenario (BaseModel named again so that linters see a pydantic model
    here and do not take its field defaults for shared class attributes)."""


_CallNumber = Annotated[int, Field(ge=1, le=MAX_COUNT)]
_Seconds = Annotated[float, Field(ge=0.0, le=MAX_SECONDS)]


class FaultSpec(_Spec):
    kind: Literal[FAULT_KINDS]  # type: ignore[valid-type]
    target: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=200)
    on_call: list[_CallNumber] = Field(default=[], max_length=10_000)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    window_s: tuple[_Seconds, _Seconds] | None = None
    times: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    status: int = Field(default=503, ge=100, le=599)
    retry_after_s: float | None = Field(default=None, ge=0.0, le=MAX_SECONDS)
    latency_s: float = Field(default=0.0, ge=0.0, le=MAX_SECONDS)
    latency_range_s: tuple[_Seconds, _Seconds] | None = None
    latency_distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    stale_s: float = Field(default=90.0, ge=0.0, le=MAX_SECONDS)
    rename: dict[str, str] = {}
    remove: list[str] = []
    retype: list[str] = []
    replace: dict[str, Any] = {}
    text: str = ""
    fields: list[str] = []
    point: Literal["before", "after"] = "after"

    @field_validator("window_s", "latency_range_s")
    @classmethod
    def _ordered(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        if pair is not None and pair[0] > pair[1]:
            raise ValueError(f"expected [low, high] with low <= high, not {list(pair)}")
        return pair

    def build(self) -> Fault:
        data = self.model_dump()
        if data["target"] == "model":
            data["target"] = "model.complete"  # the short form of the model's target
        for name in ("on_call", "remove", "retype", "fields"):
            data[name] = tuple(data[name])
        return Fault(**data)


class ApproverSpec(_Spec):
    """The approver persona that decides calls the policy holds for approval.

    ``default``: ``trusted`` approves a held call unless its values trace to content below the
    user's trust (a supervisor who refuses what a document asked for), ``approve`` approves
    everything, ``deny`` nothing. ``deny_tools`` are always refused; ``approve_tools`` always
    granted (``deny_tools`` wins)."""

    default: Literal["trusted", "approve", "deny"] = "trusted"
    deny_tools: list[str] = []
    approve_tools: list[str] = []


class PrincipalSpec(_Spec):
    id: str = "customer"
    roles: list[str] = []


class Knobs(_Spec):
    sloppy: float = Field(default=0.0, ge=0.0, le=1.0)
    gullible: float = Field(default=0.0, ge=0.0, le=1.0)


class _Budgets(_Spec):
    """The budgets a scenario may set: the fields of :class:`~tether.runtime.budgets.Budgets`
    (a test pins that they match), each bounded so that an episode ends."""

    max_steps: int = Field(default=50, ge=1, le=MAX_STEPS)
    max_model_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tool_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tokens: int | None = Field(default=None, ge=1, le=10**12)
    max_cost_usd: float | None = Field(default=None, ge=0.0, le=10**9)
    max_duration_s: float | None = Field(default=None, ge=0.0, le=MAX_SECONDS)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    repeat_limit: int | None = Field(default=3, ge=1, le=MAX_COUNT)
    failure_streak_limit: int | None = Field(default=5, ge=1, le=MAX_COUNT)
    on_breach: Literal["stop", "escalate"] = "stop"


class Invariant(_Spec):
    """One declarative invariant: ``kind`` and its settings."""

    kind: Literal["exactly_once", "at_most", "at_most_each", "never_without_approval", "never",
                  "every", "final_state", "ends_within", "python"]
    settings: dict[str, Any]


class _InvExactlyOnce(_Spec):
    effect: str
    keys: list[str] = []
    match: dict[str, Any] = {}


class _InvAtMost(_Spec):
    effect: str
    n: int = Field(ge=0, le=MAX_COUNT)


class _InvAtMostEach(_Spec):
    effect: str
    n: int = Field(default=1, ge=0, le=MAX_COUNT)
    #: Business key → how many effects of that key may happen (the others: ``n``).
    keys: dict[Annotated[str, Field(min_length=1)], Annotated[int, Field(ge=0, le=MAX_COUNT)]] = \
        Field(default={}, max_length=10_000)


class _InvApproval(_Spec):
    effect: str


class _InvNever(_Spec):
    effect: str
    match: dict[str, Any] = {}


class _InvEvery(_Spec):
    effect: str
    match: dict[str, Any]


class _InvEndsWithin(_Spec):
    seconds: float = Field(ge=0.0, le=MAX_SECONDS)


class _InvFinal(_Spec):
    service: str
    path: str = Field(min_length=1)
    #: Required (``null`` is a value to write out): a check without it would compare the
    #: state with nothing.
    equals: Any


class _InvPython(_Spec):
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", max_length=300)


_INVARIANTS: dict[str, type[StrictSpec]] = {
    "exactly_once": _InvExactlyOnce, "at_most": _InvAtMost, "at_most_each": _InvAtMostEach,
    "never_without_approval": _InvApproval, "never": _InvNever, "final_state": _InvFinal,
    "python": _InvPython, "every": _InvEvery, "ends_within": _InvEndsWithin,
}


class Scenario(_Spec):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    #: The agent under test: a short name (``refund``, ``calendar``, or any registered in the
    #: ``tether.agents`` entry point group), ``package.module:function``, or
    #: ``path/to/file.py:function`` relative to the scenario's folder (see
    #: :mod:`tether.sim.agent_ref`).
    agent: str = Field(min_length=1, max_length=500)
    #: The declared variables of a YAML agent (``agent: path/to/agent.yaml``), over the
    #: file's defaults; checked against the file's declarations before an episode runs.
    variables: dict[str, Any] = {}
    task: str
    #: The model the agent runs with: ``own`` (the agent's), ``{script: "pkg.mod:fn"}`` (a
    #: function of the environment returning a model), or ``{replay: [...]}`` (recorded answers).
    model: str | dict[str, Any] = "own"
    #: How the user is played (see :mod:`tether.sim.users`); empty: the scripted persona.
    user: dict[str, Any] = {}
    #: Who decides held calls (see :class:`ApproverSpec`).
    approver: ApproverSpec = ApproverSpec()
    #: A policy the story needs, added to the agent's own under the default harness: a path
    #: (relative to the scenario's folder) or an inline policy (``tether.policy.spec``).
    policy: str | dict[str, Any] | None = None
    #: Tool answers recorded from a real run (see :mod:`tether.sim.recorded`).
    recorded: dict[str, Any] = {}
    principal: PrincipalSpec = PrincipalSpec()
    persona: Persona = Persona()
    knobs: Knobs = Knobs()
    world: dict[str, dict[str, Any]] = {}
    faults: list[FaultSpec] = []
    budgets: dict[str, Any] = {}
    invariants: list[Invariant] = []
    #: What the task asked, as checks over the ledger in the invariants' syntax: the episode
    #: succeeded when its run completed and every one holds.
    success: list[Invariant] = []
    source: str = ""

    def fault_plan(self) -> FaultPlan:
        return FaultPlan(tuple(f.build() for f in self.faults))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    data = load_yaml(path, "scenario")
    return scenario_from_dict(data, where=str(path))


def scenario_from_dict(data: Any, *, where: str = "<scenario>") -> Scenario:
    """Validate parsed scenario data (see the module docstring)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top, found {describe(data)}")
    raw = dict(data)
    invariants = []
    for index, item in enumerate(_listed(raw, "invariants", where)):
        kind, checked = one_of(item, _INVARIANTS, where=where, at=f"invariants[{index}]",
                               noun="invariant")
        _check_effect(checked, where, f"invariants[{index}].{kind}")
        invariants.append(Invariant.model_validate({"kind": kind,
                                                    "settings": checked.model_dump()}))
    success = []
    for index, item in enumerate(_listed(raw, "success", where)):
        if isinstance(item, dict) and set(item) == {"kind", "settings"}:
            item = {item["kind"]: item["settings"]}  # a dumped scenario read back
        success.append(check_from_dict(item, where=where, at=f"success[{index}]",
                                       noun="success check"))
    policy = raw.get("policy")
    if policy is not None and not isinstance(policy, str | dict):
        raise UsageError(f"{where}: policy: expected a policy file's path or a policy mapping, "
                         f"found {describe(policy)} {short_repr(policy)}")
    try:
        scenario = Scenario.model_validate({**raw, "source": where})
    except ValidationError as exc:
        raise explain(where, "", exc, Scenario) from exc
    budgets = _budgets(scenario.budgets, where)
    _check_recorded(scenario.recorded, invariants, success, where)
    _check_model(scenario.model, where)
    _check_targets(scenario, where)
    from tether.sim.users import user_spec_from_dict  # users build on this module

    user_spec_from_dict(scenario.user, where)
    scenario_policy(scenario, _folder(where))  # a policy that does not load fails here
    # Typed fields have their own bounds; this catches the free-form ones (world seeds, fault
    # replacements, persona facts, invariant values) before they reach a service or a clock.
    _check_numbers(raw, "", where)
    _check_world(scenario.world, where)
    return scenario.model_copy(update={"invariants": invariants, "success": success,
                                       "budgets": budgets})


def _check_recorded(recorded: dict[str, Any], invariants: list[Invariant],
                    success: list[Invariant], where: str) -> None:
    """Refuse a bad ``recorded:`` mapping, and checks of a ``recorded.<tool>`` effect that the
    recording does not write."""
    known = recorded_effects(recording_from_dict(recorded, where=where)) if recorded else {}
    for label, checks in (("invariants", invariants), ("success", success)):
        for index, check in enumerate(checks):
            effect = check.settings.get("effect")
            if isinstance(effect, str) and effect.partition(".")[0] == RECORDED_SERVICE \
                    and effect not in known:
                raise UsageError(
                    f"{where}: {label}[{index}].{check.kind}.effect: {effect} is not a write of "
                    f"this scenario's recorded: tools (known: {', '.join(known) or 'none'})")
            if check.kind == "final_state" and not recorded and \
                    check.settings.get("service") == RECORDED_SERVICE:
                raise UsageError(
                    f"{where}: {label}[{index}].final_state.service: {RECORDED_SERVICE} has a "
                    "final state only in a scenario with a recorded: block (a captured run)")


#: The services whose final state a ``final_state`` check can read.
_SNAPSHOTTED = frozenset({*SERVICES, "user", RECORDED_SERVICE})


def check_from_dict(item: Any, *, where: str, at: str, noun: str = "check") -> Invariant:
    """One invariant or success check (``{kind: settings}``), validated as the loader does:
    a known kind, its settings' names and types, an effect the world records."""
    kind, checked = one_of(item, _INVARIANTS, where=where, at=at, noun=noun)
    _check_effect(checked, where, f"{at}.{kind}")
    if isinstance(checked, _InvFinal) and checked.service not in _SNAPSHOTTED:
        raise UsageError(f"{where}: {at}.{kind}.service: unknown service "
                         f"{short_repr(checked.service)}; expected one of "
                         f"{', '.join(sorted(_SNAPSHOTTED))}")
    return Invariant.model_validate({"kind": kind, "settings": checked.model_dump()})


#: The model's fault target (``model`` is accepted as its short form).
MODEL_TARGET = "model.complete"


def fault_targets(recorded: Mapping[str, Any] | None = None) -> list[str]:
    """Every target a fault can name: each simulated service's operations, the user, the
    model, and the tools of a ``recorded:`` block."""
    targets = [f"{name}.{operation}" for name, service in SERVICES.items()
               for operation in getattr(service, "OPERATIONS", ())]
    targets += ["user.ask", MODEL_TARGET]
    tools = (recorded or {}).get("tools")
    if isinstance(tools, dict):
        targets += [f"{RECORDED_SERVICE}.{tool}{lookup}" for tool in tools
                    for lookup in ("", ".lookup")]
    return targets


def _check_targets(scenario: Scenario, where: str) -> None:
    """Refuse a fault whose target matches no operation (a typo would never fire, and the
    episode would pass as if the fault had been survived), and a stale read of a service that
    has no replica to lag."""
    known = fault_targets(scenario.recorded)
    replicated = [t for t in known if hasattr(SERVICES.get(t.partition(".")[0]), "go_stale")]
    for index, fault in enumerate(scenario.faults):
        pattern = MODEL_TARGET if fault.target == "model" else fault.target
        candidates = replicated if fault.kind == "stale_read" else known
        # Webhook deliveries take only their own kinds, and out_of_order applies nowhere else.
        if fault.kind == "out_of_order":
            candidates = [WEBHOOK_TARGET]
        elif fault.kind in WEBHOOK_KINDS:
            candidates = [*candidates, WEBHOOK_TARGET]
        if any(fnmatch.fnmatchcase(t, pattern) for t in candidates):
            continue
        service = fault.target.partition(".")[0]
        own = [t for t in candidates if t.partition(".")[0] == service]
        if fault.kind == "out_of_order" or fnmatch.fnmatchcase(WEBHOOK_TARGET, pattern):
            expected = (f"{WEBHOOK_TARGET} for out_of_order; {WEBHOOK_TARGET} takes only "
                        f"{' and '.join(WEBHOOK_KINDS)}")
        elif fault.kind == "stale_read" and service in SERVICES and not own:
            lagging = ", ".join(sorted({t.partition(".")[0] for t in replicated}))
            expected = f"a service with a read replica ({lagging}); {service} has none"
        elif own:
            expected = f"one of {service}'s operations: {', '.join(own)}"
        else:
            expected = ("service.operation of " +
                        ", ".join(sorted({t.partition('.')[0] for t in candidates})) +
                        " (wildcards allowed), or model")
        raise UsageError(f"{where}: faults[{index}].target: {short_repr(fault.target)} matches "
                         f"nothing this fault can reach; expected {expected}")


def _folder(where: str) -> Path | None:
    """The folder of the scenario file ``where`` (``None`` for data not read from a file)."""
    source = where.split("#", 1)[0]
    return None if not source or source.startswith("<") else Path(source).resolve().parent


def _check_model(model: str | dict[str, Any], where: str) -> None:
    if model == "own":
        return
    if isinstance(model, dict) and len(model) == 1:
        ((kind, value),) = model.items()
        if kind == "script" and isinstance(value, str) and ":" in value:
            return
        if kind == "replay" and isinstance(value, list | dict):
            return
    raise UsageError(f"{where}: model: expected own, {{script: package.module:function}} or "
                     f"{{replay: [...]}}, found {short_repr(model)}")


def scenario_policy_tools(scenario: Scenario, base_dir: Path | None = None) -> list[str]:
    """The tool names the scenario's story policy mentions (its rules' ``tool``/``tools``)."""
    given = scenario.policy
    if given is None:
        return []
    if isinstance(given, str):
        path = Path(given).expanduser()
        if not path.is_absolute():
            path = (base_dir or _folder(scenario.source) or Path.cwd()) / path
        given = load_yaml(path, "policy")
    names: list[str] = []
    for rule in (given.get("rules") or []) if isinstance(given, dict) else []:
        for settings in rule.values() if isinstance(rule, dict) else ():
            if isinstance(settings, dict):
                if isinstance(settings.get("tool"), str):
                    names.append(settings["tool"])
                names += [t for t in settings.get("tools") or () if isinstance(t, str)]
    return names


def scenario_policy(scenario: Scenario, base_dir: Path | None = None) -> Policy | None:
    """The policy the scenario's story adds (its ``policy:``), loaded and checked."""
    from tether.policy.policy import load_policy, policy_from_dict

    given = scenario.policy
    where = scenario.source or "<scenario>"
    if given is None:
        return None
    if isinstance(given, dict):
        return policy_from_dict(given, where=f"{where}: policy")
    path = Path(given).expanduser()
    if not path.is_absolute():
        path = (base_dir or _folder(where) or Path.cwd()) / path
    if not path.is_file():
        raise UsageError(f"{where}: policy: no policy file {path}")
    return load_policy(path)


def _check_effect(checked: StrictSpec, where: str, at: str) -> None:
    check_effect_settings(checked.model_dump(), where, at)


def check_effect_settings(settings: Mapping[str, Any], where: str, at: str) -> None:
    """Refuse an invariant's settings naming an effect no service records (:data:`EFFECTS`),
    or matching on a field that effect does not carry or with a value that field cannot have:
    such a check would hold, or never match, whatever the agent did. ``where`` and ``at`` name
    the file and the key path in the error."""
    name = settings.get("effect")
    if not isinstance(name, str):
        return
    if name in EFFECTS:
        fields = EFFECTS[name]
    elif name.partition(".")[0] == RECORDED_SERVICE and name.count(".") == 1:
        fields = RECORDED_FIELDS  # a recorded tool's writes (tether.sim.recorded)
    else:
        # A bare service name counts every operation of that service.
        operations = [fields for known, fields in EFFECTS.items()
                      if known.partition(".")[0] == name]
        if not operations:
            raise UsageError(f"{where}: {at}.effect: unknown effect {short_repr(name)}; expected "
                             f"one of {', '.join(sorted(EFFECTS))}")
        fields = {k: v for op in operations for k, v in op.items()}
    for key, value in (settings.get("match") or {}).items():
        if key not in fields:
            raise UsageError(f"{where}: {at}.match.{key}: {name} effects carry no field "
                             f"{short_repr(key)}; expected one of {', '.join(sorted(fields))}")
        types = fields[key]
        fits = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not fits:
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise UsageError(f"{where}: {at}.match.{key}: expected {expected} (the type of "
                             f"{name}'s {key}), found {describe(value)} {short_repr(value)}")


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", type(None): "null"}


def _listed(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    """``raw[key]`` (removed from ``raw``): a list, or nothing when absent or null."""
    items = raw.pop(key, None)
    if items is not None and not isinstance(items, list):
        raise UsageError(f"{where}: {key}: expected a list of one-key mappings, found "
                         f"{describe(items)}")
    return items or []


def _budgets(given: dict[str, Any], where: str) -> dict[str, Any]:
    """The budgets as set (an unknown name lists the known ones)."""
    try:
        checked = _Budgets.model_validate(given)
    except ValidationError as exc:
        raise explain(where, "budgets", exc, _Budgets) from exc
    return checked.model_dump(exclude_unset=True)


def _check_world(world: dict[str, dict[str, Any]], where: str) -> None:
    """Refuse a seeded world the services would refuse, naming the key path."""
    for name, state in world.items():
        if name not in SERVICES:
            raise UsageError(f"{where}: world.{short_repr(name)}: unknown service; expected one "
                             f"of {', '.join(sorted(SERVICES))}")
        try:
            SERVICES[name](World(seed=0), state)
        except ValidationError as exc:
            raise explain(where, f"world.{name}", exc) from exc
        except (ValueError, TypeError, ArithmeticError) as exc:
            # The services' own checks (unique ids, references between records) say what is
            # wrong in words; the error names where.
            raise UsageError(f"{where}: world.{name}: {exc}") from exc


def _check_numbers(value: Any, path: str, where: str) -> None:
    """Refuse numbers no scenario means (inf, nan, beyond :data:`MAX_NUMBER`)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed([(v, f"{at}.{k}" if at else str(k)) for k, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(v, f"{at}[{i}]") for i, v in enumerate(item)]))
        elif isinstance(item, int | float) and not isinstance(item, bool) and (
                (isinstance(item, float) and not math.isfinite(item))
                or abs(item) > MAX_NUMBER):
            raise UsageError(f"{where}: {at}: expected a finite number within "
                             f"±{MAX_NUMBER:.0e}, found {short_repr(item)}")
