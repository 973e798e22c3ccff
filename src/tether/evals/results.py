"""The results of a campaign, as written to ``results.json`` (the documented schema).

A campaign's JSON has these parts:

* ``campaign`` — what was run: scenarios, suites, harnesses, seeds per cell, episode count;
* ``cells`` — one :class:`Cell` per (harness, suite): counts, the pass rate with its Wilson
  95 % interval, pass^k, duplicate-effect and recovery rates, failures by domain, verdicts, and
  mean per-episode metrics. ``inconclusive`` counts the episodes whose suite faults never
  reached the agent (or whose suite could not be applied, ``not_applied`` of them): they are
  left out of every rate, which is over the ``episodes - inconclusive`` conclusive ones. A cell
  with no conclusive episode has ``pass_rate`` and ``interval`` ``null``: it is inconclusive,
  never a pass rate;
* ``by_fault`` — per harness and fault kind: duplicate-effect, violation and recovery rates
  over the conclusive episodes where that kind of fault fired (an episode where several kinds
  fired counts for each);
* ``failures`` — the worst failing episodes (:class:`FailureCase`), each with the invariants it
  broke and the effect each was about (:class:`BrokenInvariant`), its shrunk fault plan, a
  one-line replay command and its trace as a timeline;
* ``not_applied`` — the suites that could not be applied to some scenario (suite → reason):
  a requested suite that tested nothing, which a CI gate must not read as a pass.

Files written before these fields existed read back with ``inconclusive`` and ``not_applied``
at 0 and ``not_applied`` empty: every episode conclusive, as it then was counted.

Everything is plain JSON; :meth:`CampaignResults.model_validate_json` reads it back.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BrokenInvariant", "CampaignInfo", "CampaignResults", "Cell", "FailureCase",
           "FaultStats", "TraceItem"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignInfo(_Model):
    name: str = "campaign"
    scenarios: list[str]
    suites: list[str]
    harnesses: list[str]
    seeds: int = Field(description="seeds per (scenario, suite, harness)")
    episodes: int


class Cell(_Model):
    """One harness on one suite, over every scenario and seed."""

    harness: str
    suite: str
    episodes: int
    inconclusive: int = Field(
        default=0, description="episodes whose suite faults never reached the agent (no "
        "invariant broke), or whose suite could not be applied; left out of every rate")
    not_applied: int = Field(
        default=0, description="of the inconclusive, episodes not run because the suite could "
        "not be applied (see CampaignResults.not_applied)")
    passed: int = Field(description="episodes whose invariants all held and whose task succeeded")
    violations: int = Field(description="episodes with at least one invariant violated")
    task_success: int = Field(description="conclusive episodes whose task was done as asked")
    unacceptable_process: int = Field(
        description="correct outcome reached by a process the grader rejects")
    stopped: int = Field(
        default=0, description="safe, not done: the harness escalated or hit a budget on "
        "purpose and journaled why (an outcome it could not settle, a deadline)")
    pass_rate: float | None = Field(
        description="passed / conclusive episodes; null when none was conclusive")
    interval: tuple[float, float] | None = Field(
        description="Wilson 95% interval of pass_rate; null when it is")
    pass_k: dict[str, float] = Field(
        description="pass^k for k in 1, 2, 4, 8 (tau-bench), over conclusive episodes")
    duplicate_effects: int = Field(description="effects beyond the first per business key")
    duplicate_rate: float = Field(
        description="conclusive episodes with a duplicate effect / conclusive episodes")
    recovery_rate: float | None = Field(
        description="faulted conclusive episodes that still succeeded safely / those episodes")
    domains: dict[str, int] = Field(description="failures by failure domain")
    verdicts: dict[str, int]
    mean_steps: float
    mean_model_calls: float
    mean_tool_calls: float
    mean_retries: float
    mean_virtual_s: float
    mean_cost_usd: float

    @property
    def conclusive(self) -> int:
        """The episodes the rates are over: those that met their suite's faults."""
        return self.episodes - self.inconclusive


class TraceItem(_Model):
    at_s: float
    kind: str
    name: str
    detail: str = ""
    failed: bool = False


class BrokenInvariant(_Model):
    """One invariant a failing episode broke, as the grader checked it."""

    invariant: str = Field(description="the invariant as checked, e.g. at_most(effect=x.y, n=1)")
    kind: str = Field(description="its kind: exactly_once, at_most, never, ends_within, …")
    effect: str = Field(default="", description="the effect (service.operation) it is about; "
                        "empty for one about the whole episode (ends_within, final_state, …)")
    detail: str = Field(default="", description="what the ledger or final state showed")


class FailureCase(_Model):
    scenario: str
    suite: str
    harness: str
    seed: int
    verdict: str
    problems: list[str]
    domain: str
    faults: list[str] = Field(description="the fault plan as run, one label per fault")
    shrunk_faults: list[str] = Field(description="the smallest plan that still fails")
    replay: str = Field(description="a command that reproduces the failure")
    trace: list[TraceItem] = []
    broken: list[BrokenInvariant] = Field(
        default=[], description="the invariants broken (none when the verdict is not a "
        "violation: the task failed, or was done by a rejected process)")


class FaultStats(_Model):
    """How one harness fared on the episodes where one kind of fault fired."""

    harness: str
    fault: str = Field(description="fault kind, e.g. timeout_after")
    episodes: int
    duplicate_rate: float = Field(description="episodes with a duplicate effect / episodes")
    violation_rate: float
    recovery_rate: float = Field(description="episodes safe and done despite it / episodes")


class CampaignResults(_Model):
    campaign: CampaignInfo
    cells: list[Cell]
    by_fault: list[FaultStats] = []
    failures: list[FailureCase] = []
    not_applied: dict[str, str] = Field(
        default={}, description="suites that could not be applied (suite → reason)")
