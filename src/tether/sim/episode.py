"""One episode: a scenario, a seed, an agent and a harness, run to the end and judged.

``run_episode`` builds the world from the scenario and the seed, hands the agent factory the
simulated :class:`~tether.sim.environment.Environment` (clients of the world's services behind
the fault layer, the simulated user, the clock), runs the agent it returns — with the model the
scenario chooses, behind the model fault layer — under the chosen harness, and checks the
scenario's invariants and what its task asked (``success``, else what the agent declared with
``env.expect``) against the ledger and the services' final state. The result carries digests of
the journal and the ledger, so two runs of one seed can be compared byte for byte, and the
service calls the agent's tools made.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tether.agent.agent import Agent, Task
from tether.errors import UsageError
from tether.events import encode
from tether.models.base import Model
from tether.policy.policy import Policy
from tether.runtime.approvals import PendingApproval
from tether.sim.agent_ref import (
    AgentFactory,
    agent_spec_of,
    load_agent_factory,
    load_callable,
)
from tether.sim.calls import ServiceCall
from tether.sim.environment import Environment, instrument
from tether.sim.faults import FaultLayer, Firing
from tether.sim.foreign import Replier, build_participant, run_replier
from tether.sim.harness import HarnessOutcome, run_default, run_naive
from tether.sim.harness_spec import HarnessSpec, apply_harness, resolve_harness
from tether.sim.invariants import EpisodeFacts, InvariantVerdict, check_invariants
from tether.sim.models import FaultyModel
from tether.sim.recorded import unrecorded, wrap_recorded
from tether.sim.replayed import replay_divergence
from tether.sim.scenario import (
    SERVICES,
    ApproverSpec,
    Scenario,
    scenario_policy,
    scenario_policy_tools,
)
from tether.sim.users import build_user, user_spec_from_dict
from tether.sim.users import inconclusive as user_inconclusive
from tether.sim.world import World

__all__ = ["EpisodeResult", "environment_for", "run_episode", "run_episode_async", "scenario_dir"]


@dataclass
class EpisodeResult:
    """What happened, judged."""

    scenario: str
    seed: int
    harness: str
    status: str
    answer: str
    reason: str
    verdicts: list[InvariantVerdict]
    firings: list[Firing]
    crashes: int
    journal_digest: str
    ledger_digest: str
    virtual_duration_s: float
    model_calls: int
    tool_calls: int
    ledger: list[dict[str, Any]] = field(default_factory=list)
    #: The task's checks (the scenario's ``success``, else the agent's): what was asked.
    task_checks: list[InvariantVerdict] = field(default_factory=list)
    outcome: HarnessOutcome | None = field(default=None, repr=False)
    #: The agent that ran, as a spec that names it from anywhere (repro files carry it).
    agent: str = ""
    #: Every call the agent's tools made to the simulated services, in order.
    calls: list[ServiceCall] = field(default_factory=list)
    #: Why this episode cannot judge the agent (empty: it can): a replayed user or recorded
    #: tool asked beyond its recording. Such an episode is inconclusive, never a pass.
    inconclusive: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every invariant holds."""
        return all(v.holds for v in self.verdicts)

    @property
    def checked(self) -> bool:
        """Whether any task check can show the task was done: one that requires an effect or
        a state (``exactly_once`` with ``match`` or ``keys``, ``final_state``, ``python``).
        Checks that only forbid (``every``, ``never``, ``at_most`` …) hold when nothing
        happened, so alone they cannot say the task was done."""
        return any(_requires_something(v.invariant) for v in self.task_checks)

    @property
    def done(self) -> bool:
        """The run completed and did what the task asked: every task check holds and at least
        one of them requires something to have happened."""
        return self.status == "completed" and self.checked and \
            all(v.holds for v in self.task_checks)

    @property
    def headline(self) -> str:
        """The verdict in one word, as ``tether sim run`` prints it: ``FAIL`` (an invariant
        violated), ``INCONCLUSIVE``, ``PASS`` (the task done), ``UNCHECKED`` (nothing can show
        the task was done) or ``NOT DONE``."""
        if not self.ok:
            return "FAIL"
        if self.inconclusive:
            return "INCONCLUSIVE"
        if self.done:
            return "PASS"
        return "NOT DONE" if self.checked else "UNCHECKED"

    def as_data(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "seed": self.seed, "harness": self.harness,
            "status": self.status, "answer": self.answer, "reason": self.reason,
            "ok": self.ok, "verdicts": [v.as_data() for v in self.verdicts],
            "faults_fired": [{"fault": f.fault, "kind": f.kind, "target": f.target,
                              "call": f.call, "at": f.at} for f in self.firings],
            "crashes": self.crashes, "journal_digest": self.journal_digest,
            "ledger_digest": self.ledger_digest,
            "virtual_duration_s": self.virtual_duration_s, "model_calls": self.model_calls,
            "tool_calls": self.tool_calls, "ledger": self.ledger,
            "task_checks": [v.as_data() for v in self.task_checks],
            "agent": self.agent, "calls": [c.as_data() for c in self.calls],
            "inconclusive": self.inconclusive,
        }


AgentArg = str | AgentFactory | None


def _requires_something(rendered: str) -> bool:
    """Whether a rendered check (``kind(settings)``) fails when nothing happened."""
    kind, _, settings = rendered.partition("(")
    if kind in ("final_state", "python"):
        return True
    return kind == "exactly_once" and ("match=" in settings or "keys=" in settings)


def run_episode(scenario: Scenario, seed: int, harness: str | HarnessSpec = "default", *,
                agent: AgentArg = None, harness_files: tuple[str, ...] = ()) -> EpisodeResult:
    """Run one episode to the end (its own event loop). ``agent`` overrides the scenario's
    (a spec or a factory); ``harness`` is ``naive``, ``default``, a variant defined in one of
    ``harness_files``, or a :class:`HarnessSpec`."""
    return asyncio.run(run_episode_async(scenario, seed, harness, agent=agent,
                                         harness_files=harness_files))


def scenario_dir(scenario: Scenario) -> Path | None:
    """The folder a scenario was read from (what relative paths in it are relative to)."""
    source = scenario.source.split("#", 1)[0]
    if not source or source.startswith("<"):
        return None
    return Path(source).resolve().parent


async def run_episode_async(scenario: Scenario, seed: int,
                            harness: str | HarnessSpec = "default", *, agent: AgentArg = None,
                            harness_files: tuple[str, ...] = ()) -> EpisodeResult:
    """:func:`run_episode` inside a running event loop."""
    spec = harness if isinstance(harness, HarnessSpec) else \
        resolve_harness(harness, harness_files)
    base_dir = scenario_dir(scenario)
    chosen = agent if agent is not None else scenario.agent
    factory = load_agent_factory(chosen, base_dir, variables=scenario.variables)
    agent_name = _named(chosen, base_dir)
    env = environment_for(scenario, seed)
    world, layer = env.world, env.layer
    built = build_participant(factory, env, agent_name)
    if isinstance(built, Replier):  # an agent of another framework: a conversation
        started = world.now()
        outcome, journal, unsettled = await run_replier(
            env, built, factory, agent_name, spec, run_id=f"{scenario.name}-{seed}")
        return _judged(env, spec, agent_name, outcome, journal, started, unsettled)
    if spec.base == "default":
        # Budgets: the agent's, then the scenario's story (a deadline it needs), then the
        # variant's — a variant that sets a limit is measured with that limit.
        storied = replace(built, budgets=replace(built.budgets, **scenario.budgets))
        configured = apply_harness(storied, spec)
        configured = replace(configured, policy=_policy(configured.policy, scenario, base_dir))
    else:
        configured = built
    _check_tool_names(scenario, configured, base_dir, agent_name)
    ran: list[str] = []
    tools = instrument(configured.tools, ran)
    if scenario.recorded:
        tools = wrap_recorded(tools, scenario.recorded, world, layer)
    model = FaultyModel(_model(scenario, env, built.model, base_dir), layer)
    runnable = replace(configured, model=model, tools=tools)
    task = Task(text=scenario.task, principal=scenario.principal.id,
                roles=tuple(scenario.principal.roles), environment="sim")
    started = world.now()
    if spec.base == "default":
        outcome = await run_default(world, runnable, task, approver=approver(scenario.approver),
                                    run_id=f"{scenario.name}-{seed}")
        journal = "\n".join(encode(e) for e in outcome.events)
    else:
        outcome = await run_naive(world, runnable, task,
                                  max_steps=int(scenario.budgets.get("max_steps") or 20))
        journal = json.dumps({"transcript": outcome.transcript, "answer": outcome.answer,
                              "conversation": outcome.conversation},
                             sort_keys=True, default=str)
    # Tools that ran without the factory asking for any client, or that answered without
    # calling any simulated service, are not bound to the simulation (a tool that refused its
    # arguments before calling a client it holds is the agent's own behaviour).
    # An agent that took no client from the environment, yet whose tools ran, is not bound to
    # the simulation. One that holds clients is, even in an episode that needed no service
    # (a question its pure tools answer).
    unbound = ran and not env.clients_made
    if unbound and not scenario.recorded:
        names = ", ".join(sorted(set(ran)))
        raise UsageError(
            f"agent {agent_name}: its tools ({names}) ran but reached no simulated service, so "
            "the simulation cannot test them; build their clients from the environment the "
            "factory receives (env.client(\"payments\"), ...) instead of real ones")
    return _judged(env, spec, agent_name, outcome, journal, started, replay_divergence(model))


def _judged(env: Environment, spec: HarnessSpec, agent_name: str, outcome: HarnessOutcome,
            journal: str, started: float, unsettled: list[str]) -> EpisodeResult:
    """The episode judged: invariants and task checks against the ledger and final state."""
    scenario, world, layer, seed = env.scenario, env.world, env.layer, env.seed
    snapshots = {name: service.snapshot() for name, service in world.services.items()}
    duration_s = world.now() - started
    causes = {seq: call.tool for call in env.calls for seq in call.effects}
    facts = EpisodeFacts(ledger=world.ledger, snapshots=snapshots, approvals=outcome.approvals,
                         effect_causes=causes, duration_s=duration_s)
    return EpisodeResult(
        scenario=scenario.name, seed=seed, harness=spec.name, status=outcome.status,
        answer=outcome.answer, reason=outcome.reason,
        verdicts=check_invariants(scenario.invariants, facts), firings=list(layer.firings),
        crashes=outcome.crashes,
        journal_digest=hashlib.sha256(journal.encode()).hexdigest(),
        ledger_digest=world.ledger.digest(), virtual_duration_s=duration_s,
        model_calls=outcome.model_calls, tool_calls=outcome.tool_calls,
        ledger=[e.as_data() for e in world.ledger],
        task_checks=check_invariants(scenario.success or env.expected, facts),
        outcome=outcome, agent=agent_name, calls=list(env.calls),
        inconclusive=[*user_inconclusive(world), *unrecorded(world),
                      *unsettled])


def _named(chosen: AgentArg, base_dir: Path | None) -> str:
    """The agent's spec for records and repro files; a factory that no file can name (a
    lambda, a closure) is described instead — it can run, only not be written into a repro."""
    assert chosen is not None
    try:
        return agent_spec_of(chosen, base_dir)
    except UsageError:
        return f"{getattr(chosen, '__module__', '?')}:{getattr(chosen, '__qualname__', '?')}"


def _check_tool_names(scenario: Scenario, agent: Agent, base_dir: Path | None,
                      name: str) -> None:
    """Refuse an approver or story policy naming a tool the agent does not have: the rule
    would never apply, and the episode would pass as if it had been honoured."""
    have = {t.name for t in agent.tools}
    named = {f"approver.{key}": list(getattr(scenario.approver, key))
             for key in ("deny_tools", "approve_tools")}
    named["policy"] = scenario_policy_tools(scenario, base_dir)
    for where, tools in named.items():
        unknown = sorted(set(tools) - have)
        if unknown:
            missing = ", ".join(map(repr, unknown))
            raise UsageError(
                f"{scenario.source or '<scenario>'}: {where}: no tool {missing} in agent "
                f"{name}; its tools are {', '.join(sorted(have)) or 'none'}")


def environment_for(scenario: Scenario, seed: int = 0) -> Environment:
    """The simulated environment of ``scenario`` for ``seed``, as an agent factory receives
    it: the world's services seeded from the scenario, the fault layer with its faults, the
    simulated user. For a test of a factory: ``agent = my_factory(environment_for(scenario))``."""
    world = World(seed=seed)
    for name, service in SERVICES.items():
        world.add(name, service(world, scenario.world.get(name)))
    layer = FaultLayer(world, scenario.fault_plan())
    spec = user_spec_from_dict(scenario.user, where=scenario.source or "<scenario>")
    user = world.add("user", build_user(spec, world, scenario.persona, scenario_dir(scenario)))
    return Environment(scenario, world, layer, user)


def _model(scenario: Scenario, env: Environment, own: Model, base_dir: Path | None) -> Model:
    """The model the scenario chooses: the agent's own, a scripted one, or a replay."""
    chosen = scenario.model
    if chosen == "own":
        return own
    assert isinstance(chosen, dict)  # the scenario's loader allows nothing else
    if "script" in chosen:
        script = load_callable(chosen["script"], base_dir, what="model.script")
        try:
            made = script(env)
        except Exception as exc:
            raise UsageError(f"model.script {chosen['script']}: it raised "
                             f"{type(exc).__name__}: {exc}") from exc
        if not callable(getattr(made, "complete", None)):
            raise UsageError(f"model.script {chosen['script']}: returned "
                             f"{type(made).__name__}; expected a model (with complete())")
        return made  # type: ignore[no-any-return]
    from tether.sim.capture import replay_model

    return replay_model(chosen["replay"])


def _policy(own: Policy | None, scenario: Scenario, base_dir: Path | None) -> Policy | None:
    """The agent's policy plus the rules the scenario's story needs."""
    story = scenario_policy(scenario, base_dir)
    if story is None:
        return own
    if own is None:
        return story
    return own.with_rules(story.rules)


def approver(spec: ApproverSpec) -> Callable[[PendingApproval], bool]:
    """The approver persona the scenario describes (see :class:`ApproverSpec`)."""

    def decide(held: PendingApproval) -> bool:
        if held.tool in spec.deny_tools:
            return False
        if held.tool in spec.approve_tools:
            return True
        if spec.default == "approve":
            return True
        if spec.default == "deny":
            return False
        return not held.sources  # trusted: nothing below the user's trust asked for it

    return decide
