"""The verdict on a world as it stands: what ``tether sim serve`` answers at its verdict path.

:func:`judge` checks the scenario's invariants and task checks (``success``) against the ledger
and the services' state as they are *now*, as ``tether sim run`` judges an episode;
:func:`verdict_data` is its JSON and :func:`result_of` reads that JSON back. A module of its own
because two others build on it: the ASGI app answers with it, and :mod:`~tether.sim.wire.serve`
(which starts the ASGI app) prints it when it stops.

**Faults that cannot reach a served agent** — the model's (``rate_limit``,
``malformed_output``, ``context_overflow``, any target of ``model``), the simulated user's,
a worker ``crash`` (it cannot stop an agent in another process; its connection is dropped
instead) — make the verdict ``INCONCLUSIVE``: the scenario asked for them, and the session did
not test them. So do faults it can deliver when none of them fired (the agent never made the
calls they wait for), and a session no request of which reached an operation: there is no
agent to judge, so an invariant the seed's world breaks by itself (a listed refund missing) is
named in the reason, not counted as a ``FAIL``. Nor can the served world see approvals (none
can be asked for over the wire): an effect a ``never_without_approval`` invariant covers is
named among the reasons, not judged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from typing import TYPE_CHECKING, Any

from tether.errors import UsageError
from tether.sim.calls import ServiceCall
from tether.sim.faults import SERVICE_KINDS, WEBHOOK_KINDS, WEBHOOK_TARGET, Fault, Firing
from tether.sim.invariants import EpisodeFacts, InvariantVerdict, check_invariants

if TYPE_CHECKING:
    from tether.sim.environment import Environment
    from tether.sim.episode import EpisodeResult

__all__ = ["SERVED_AGENT", "judge", "result_of", "unfired_faults", "unreachable_faults",
           "verdict_data"]

#: The agent a served world's verdict names: whoever sent its requests.
SERVED_AGENT = "served (the agent that reached it over the wire)"


def judge(env: Environment) -> EpisodeResult:
    """The verdict on ``env``'s world as it is now: the scenario's invariants and task checks
    against the ledger and the services' state, judged as ``tether sim run`` judges."""
    from tether.sim.episode import EpisodeResult

    world, scenario = env.world, env.scenario
    snapshots = {name: service.snapshot() for name, service in world.services.items()}
    duration_s = world.now() - env.layer.started_at
    causes = {seq: call.tool for call in env.calls for seq in call.effects}
    facts = EpisodeFacts(ledger=world.ledger, snapshots=snapshots, approvals=(),
                         effect_causes=causes, duration_s=duration_s)
    record = json.dumps([c.as_data() for c in env.calls], sort_keys=True, default=str)
    verdicts = check_invariants(scenario.invariants, facts)
    inconclusive = unreachable_faults(env) + unfired_faults(env)
    # No approval can be asked for or granted over the wire: an effect under
    # never_without_approval says nothing of whether the agent would have sought one.
    unseen = [v for inv, v in zip(scenario.invariants, verdicts, strict=True)
              if inv.kind == "never_without_approval" and not v.holds]
    inconclusive += [f"{v.invariant}: {v.detail}; the served world has no way to ask for or "
                     "grant an approval, so it cannot judge this (run the agent in-process "
                     "with tether sim run and the scenario's approver to test it)"
                     for v in unseen]
    verdicts = [v for v in verdicts if v not in unseen]
    if not env.calls:
        # No agent reached the world: the invariants judge only the seed's world, so a
        # violation there (a listed refund missing) is no agent's, and no FAIL.
        broken = "; ".join(f"{v.invariant}: {v.detail}" for v in verdicts if not v.holds)
        inconclusive.insert(0, "no request reached an operation of the served world (none "
                            "was sent, or each was refused before reaching one: an unknown "
                            "path, a missing token, an invalid body), so there is no agent to "
                            "judge" + (f"; as the seed's world stands, {broken}" if broken
                                       else ""))
        verdicts = [v for v in verdicts if v.holds]
    return EpisodeResult(
        scenario=scenario.name, seed=env.seed, harness="served", status="completed",
        answer="", reason="", verdicts=verdicts,
        firings=list(env.layer.firings), crashes=0,
        journal_digest=hashlib.sha256(record.encode()).hexdigest(),
        ledger_digest=world.ledger.digest(), virtual_duration_s=duration_s, model_calls=0,
        tool_calls=len(env.calls), ledger=[e.as_data() for e in world.ledger],
        task_checks=check_invariants(scenario.success or env.expected, facts),
        agent=SERVED_AGENT, calls=list(env.calls), inconclusive=inconclusive)


def _wire_targets(env: Environment) -> list[str]:
    return [f"{name}.{operation}" for name in env.gateway.faces
            for operation in getattr(type(env.world.services[name]), "OPERATIONS", ())]


def _reachable(fault: Fault, wire: list[str]) -> bool:
    targets = [WEBHOOK_TARGET] if fault.kind in WEBHOOK_KINDS else []
    targets += wire if fault.kind in SERVICE_KINDS else []
    return fault.kind != "crash" and any(fnmatch.fnmatchcase(t, fault.target) for t in targets)


def unfired_faults(env: Environment) -> list[str]:
    """Why the session is inconclusive when the scenario's faults that can reach a served
    agent exist and none of them fired: the agent never made the calls they wait for, so
    nothing says how it meets them (as an evaluation counts an episode whose faults never
    reached the agent)."""
    wire = _wire_targets(env)
    deliverable = [f for f in env.scenario.fault_plan().faults if _reachable(f, wire)]
    fired = {firing.fault for firing in env.layer.firings}
    if not deliverable or any(f.label in fired for f in deliverable):
        return []
    labels = ", ".join(dict.fromkeys(f.label for f in deliverable))
    return [f"none of the scenario's faults fired ({labels}): the agent never made the calls "
            "they wait for, so this session did not test it against them"]


def unreachable_faults(env: Environment) -> list[str]:
    """Why each of the scenario's faults that cannot reach an agent served over the wire
    cannot (see the module docstring)."""
    wire = _wire_targets(env)
    reasons = []
    for fault in env.scenario.fault_plan().faults:
        where = f"fault {fault.label} ({fault.kind} on {fault.target})"
        if fault.kind == "crash":
            reasons.append(f"{where}: a crash cannot stop an agent in another process (its "
                           "connection was dropped instead); run the agent in-process with "
                           "tether sim run to test it")
            continue
        if not _reachable(fault, wire):
            reasons.append(f"{where}: it targets what the served world does not run (the "
                           "model, the simulated user, recorded tools), so this session "
                           "cannot test it")
    return reasons


def verdict_data(result: EpisodeResult) -> dict[str, Any]:
    """The verdict as JSON: :meth:`EpisodeResult.as_data` with its ``headline`` word."""
    return {**result.as_data(), "headline": result.headline}


def result_of(data: dict[str, Any]) -> EpisodeResult:
    """The :class:`EpisodeResult` a verdict's JSON (:func:`verdict_data`) describes."""
    from tether.sim.episode import EpisodeResult

    try:
        return EpisodeResult(
            scenario=str(data["scenario"]), seed=int(data["seed"]),
            harness=str(data["harness"]), status=str(data["status"]),
            answer=str(data.get("answer", "")), reason=str(data.get("reason", "")),
            verdicts=[InvariantVerdict(**v) for v in data["verdicts"]],
            firings=[Firing(f["fault"], f["kind"], f["target"], f["call"], f["at"])
                     for f in data["faults_fired"]],
            crashes=int(data.get("crashes", 0)), journal_digest=str(data["journal_digest"]),
            ledger_digest=str(data["ledger_digest"]),
            virtual_duration_s=float(data["virtual_duration_s"]),
            model_calls=int(data.get("model_calls", 0)),
            tool_calls=int(data.get("tool_calls", 0)), ledger=list(data["ledger"]),
            task_checks=[InvariantVerdict(**v) for v in data["task_checks"]],
            agent=str(data.get("agent", "")),
            calls=[ServiceCall(**{**c, "effects": tuple(c["effects"])})
                   for c in data.get("calls", [])],
            inconclusive=[str(r) for r in data.get("inconclusive", [])])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the answer is not a tether verdict ({type(exc).__name__}: {exc}); "
                         "is the URL a tether sim serve address?") from exc
