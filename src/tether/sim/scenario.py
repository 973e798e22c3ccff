"""Scenario files: the world's seeded state, the task, faults, budgets and invariants.

.. code-block:: yaml

    name: refund-timeout-after-commit
    description: The payments API commits the refund, then the response times out.
    agent: refund                       # refund | calendar
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
    invariants:
      - exactly_once: {effect: payments.refund}
      - at_most: {effect: email.send, n: 1}
      - never_without_approval: {effect: payments.payout}
      - never: {effect: payments.refund, match: {amount: 500000}}
      - final_state: {service: crm, path: tickets.T-1.status, equals: closed}
      - python: {function: "mypackage.checks:no_duplicate_emails"}

A file that does not fit raises :class:`~tether.errors.UsageError` naming the file, the key path
and what was expected, before anything runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import UsageError
from tether.runtime.budgets import Budgets
from tether.sim.faults import FAULT_KINDS, Fault, FaultPlan
from tether.specs import describe, explain, load_yaml, one_of

__all__ = ["FaultSpec", "Invariant", "Persona", "Scenario", "load_scenario",
           "scenario_from_dict"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Spec):
    kind: Literal[FAULT_KINDS]  # type: ignore[valid-type]
    target: str
    name: str = ""
    on_call: list[int] = []
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    window_s: tuple[float, float] | None = None
    times: int | None = Field(default=None, ge=1)
    status: int = 503
    retry_after_s: float | None = None
    latency_s: float = 0.0
    latency_range_s: tuple[float, float] | None = None
    latency_distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    stale_s: float = 90.0
    rename: dict[str, str] = {}
    remove: list[str] = []
    retype: list[str] = []
    replace: dict[str, Any] = {}
    text: str = ""
    fields: list[str] = []
    point: Literal["before", "after"] = "after"

    def build(self) -> Fault:
        data = self.model_dump()
        for name in ("on_call", "remove", "retype", "fields"):
            data[name] = tuple(data[name])
        return Fault(**data)


class Persona(_Spec):
    """The simulated user: who they are, what they want and know, how they behave."""

    name: str = "Customer"
    goal: str = ""
    known_facts: dict[str, Any] = {}
    patience: int = Field(default=3, ge=1)
    style: Literal["plain", "terse", "chatty", "angry"] = "plain"
    changes_mind_at: int | None = Field(default=None, ge=1)
    new_request: str = ""


class Principal(_Spec):
    id: str = "customer"
    roles: list[str] = []


class Knobs(_Spec):
    sloppy: float = Field(default=0.0, ge=0.0, le=1.0)
    gullible: float = Field(default=0.0, ge=0.0, le=1.0)


class Invariant(_Spec):
    """One declarative invariant: ``kind`` and its settings."""

    kind: Literal["exactly_once", "at_most", "never_without_approval", "never", "every",
                  "final_state", "ends_within", "python"]
    settings: dict[str, Any]


class _InvExactlyOnce(_Spec):
    effect: str
    keys: list[str] = []
    match: dict[str, Any] = {}


class _InvAtMost(_Spec):
    effect: str
    n: int = Field(ge=0)


class _InvApproval(_Spec):
    effect: str


class _InvNever(_Spec):
    effect: str
    match: dict[str, Any] = {}


class _InvEvery(_Spec):
    effect: str
    match: dict[str, Any]


class _InvEndsWithin(_Spec):
    seconds: float = Field(ge=0.0)


class _InvFinal(_Spec):
    service: str
    path: str
    equals: Any = None


class _InvPython(_Spec):
    function: str


_INVARIANTS: dict[str, type[_Spec]] = {
    "exactly_once": _InvExactlyOnce, "at_most": _InvAtMost,
    "never_without_approval": _InvApproval, "never": _InvNever, "final_state": _InvFinal,
    "python": _InvPython, "every": _InvEvery, "ends_within": _InvEndsWithin,
}


class Scenario(_Spec):
    name: str
    description: str = ""
    agent: Literal["refund", "calendar"]
    task: str
    principal: Principal = Principal()
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
    for index, item in enumerate(raw.pop("invariants", None) or []):
        kind, checked = one_of(item, _INVARIANTS, where=where, at=f"invariants[{index}]",
                               noun="invariant")
        invariants.append(Invariant.model_validate({"kind": kind,
                                                    "settings": checked.model_dump()}))
    success = []
    for index, item in enumerate(raw.pop("success", None) or []):
        if isinstance(item, dict) and set(item) == {"kind", "settings"}:
            item = {item["kind"]: item["settings"]}  # a dumped scenario read back
        kind, checked = one_of(item, _INVARIANTS, where=where, at=f"success[{index}]",
                               noun="success check")
        success.append(Invariant.model_validate({"kind": kind, "settings": checked.model_dump()}))
    try:
        scenario = Scenario.model_validate({**raw, "source": where})
    except ValidationError as exc:
        raise explain(where, "", exc) from exc
    known = {f.name for f in dataclasses.fields(Budgets)}
    for name, value in scenario.budgets.items():
        if name not in known:
            raise UsageError(f"{where}: budgets.{name}: unknown budget; expected one of "
                             f"{', '.join(sorted(known))}")
        if name != "on_breach" and value is not None and not isinstance(value, int | float):
            raise UsageError(f"{where}: budgets.{name}: expected a number, found "
                             f"{describe(value)} {value!r}")
    return scenario.model_copy(update={"invariants": invariants, "success": success})
