"""The episode's side of a foreign agent: building it, and driving its conversation with the
simulated user under a harness until one of them ends it (see :mod:`tether.sim.foreign`).
"""

from __future__ import annotations

import fnmatch
import inspect
import json
from collections.abc import Callable
from typing import Any

from tether.agent.agent import Agent
from tether.errors import Crash, UsageError
from tether.events import encode
from tether.models.base import Message
from tether.runtime.runtime import Runtime
from tether.sim.agent_ref import AgentFactory, build_agent
from tether.sim.environment import Environment
from tether.sim.foreign.replier import FinalReply, Replier, _text
from tether.sim.foreign.tools import _SESSION, _Session, _ToolRunner
from tether.sim.harness import MAX_RESTARTS, HarnessOutcome
from tether.sim.harness_spec import HarnessSpec
from tether.sim.users import ReplayUser, SimulatedUser
from tether.store.memory import MemoryStore

__all__ = ["DEFAULT_MAX_TURNS", "build_participant", "converse", "run_replier"]

#: The turn limit when the scenario sets no ``budgets.max_steps``.
DEFAULT_MAX_TURNS = 20

#: Fault targets a foreign agent's episode cannot reach: its model is its own, and the user
#: talks with it through the conversation the episode drives, not through a service call.
_BEYOND_REACH = ("model.complete", "user.ask")


def build_participant(factory: AgentFactory, env: Environment, spec: str) -> Agent | Replier:
    """Call the agent factory: a :class:`tether.Agent` (checked as
    :func:`~tether.sim.agent_ref.build_agent` checks it) or a :class:`Replier`."""
    try:
        built: Any = factory(env)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"agent {spec}: the factory raised {type(exc).__name__}: {exc}") \
            from exc
    if isinstance(built, type):
        # A class has its reply as an attribute too, so it would pass for a Replier and fail
        # at its first turn with a TypeError the agent never caused.
        raise UsageError(f"agent {spec}: the factory returned the class {built.__name__}, "
                         f"not an agent; return an instance: {built.__name__}(...)")
    if isinstance(built, Replier) and not isinstance(built, Agent):
        if not callable(built.reply):
            raise UsageError(f"agent {spec}: {type(built).__name__}.reply is not a method "
                             "(async def reply(self, conversation) -> str)")
        return built
    if not isinstance(built, Agent) and not inspect.isawaitable(built):
        raise UsageError(f"agent {spec}: the factory returned {type(built).__name__}; expected "
                         "a tether.Agent built from the environment it was given, or an agent "
                         "of another framework as a tether.sim.foreign.Replier (an object with "
                         "async reply(conversation) -> str)")
    made: Any = built  # an Agent, or a coroutine build_agent refuses with its own message
    return build_agent(lambda _env: made, env, spec)


def _user_left(user: SimulatedUser) -> bool:
    """Whether the simulated user has ended the conversation (see the module docstring)."""
    if isinstance(user, ReplayUser):
        return user.turn >= len(user.answers)
    return user.turn > user.persona.patience


def _crash_in(exc: BaseException, depth: int = 0) -> bool:
    """Whether ``exc`` is, or carries, a simulated worker crash (a framework may wrap it in an
    exception group or its own error)."""
    if isinstance(exc, Crash):
        return True
    if depth > 16:
        return False
    inner = list(getattr(exc, "exceptions", ()))
    inner += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return any(_crash_in(e, depth + 1) for e in inner)


async def converse(env: Environment, make: Callable[[], Replier], base: str, *,
                   max_turns: int, run_id: str) -> tuple[HarnessOutcome, str]:
    """Drive the conversation between the agent ``make`` builds and the simulated user to
    its end; returns how it ended and the journal its digest is taken over. ``base`` is the
    harness (``naive`` or ``default``); a crashed worker is replaced by building the agent
    again, which continues from the conversation so far."""
    world = env.world
    runner = _ToolRunner(Runtime(MemoryStore(), clock=world.clock, seed=world.seed,
                                 owner=run_id) if base == "default" else None,
                         prefix=f"{run_id}-")
    limit_s = env.scenario.budgets.get("max_duration_s")
    if base == "default" and limit_s is not None:
        runner.deadline = world.now() + float(limit_s)
    outcome = HarnessOutcome(status="running")
    session = _Session(env, base, runner, outcome)
    conversation = [Message.user(env.task)]
    agent = make()
    token = _SESSION.set(session)
    try:
        while outcome.status == "running":
            if outcome.model_calls >= max_turns:
                outcome.status = "failed"
                outcome.reason = f"the conversation did not end within {max_turns} replies " \
                    "(budgets.max_steps)"
                break
            if runner.deadline is not None and world.now() >= runner.deadline:
                outcome.status = "failed"
                outcome.reason = f"budget exceeded: max_duration_s ({limit_s} s) was up " \
                    "before the conversation ended"
                break
            try:
                said: Any = agent.reply(tuple(conversation))
                if inspect.isawaitable(said):  # a synchronous reply is taken as it is
                    said = await said
            except BaseException as exc:
                if not _crash_in(exc):
                    if not isinstance(exc, Exception):
                        raise
                    outcome.status = "failed"
                    outcome.reason = f"the agent raised {type(exc).__name__}: {exc}"
                    break
                outcome.crashes += 1
                outcome.transcript.append({"crash": outcome.crashes, "at": world.now()})
                if outcome.crashes > MAX_RESTARTS:
                    outcome.status, outcome.reason = "crashed", "the worker kept crashing"
                    break
                if base == "default":
                    await runner.recover(world.clock, world.seed)
                agent = make()
                continue
            outcome.model_calls += 1
            text = _text(said, "the agent")
            conversation.append(Message.assistant(str(text)))
            outcome.answer = str(text)
            if isinstance(said, FinalReply):
                outcome.status, outcome.reason = "completed", "the agent ended the conversation"
            elif _user_left(env.user):
                outcome.status, outcome.reason = "completed", "the user ended the conversation"
            else:
                try:
                    conversation.append(Message.user(await env.user.ask(str(text))))
                except Exception as exc:  # a replay left its script, the user's model failed
                    outcome.status = "failed"
                    outcome.reason = f"the simulated user could not answer: {exc}"
    finally:
        _SESSION.reset(token)
    if runner.escalated and outcome.status in ("completed", "failed"):
        # tether stopped a call for a human: the run waits on one, whatever the agent did next.
        outcome.status = "escalated"
        outcome.reason = "; ".join(f"{k}: {r}" for k, r in sorted(runner.escalated.items()))
    outcome.events = runner.events()
    outcome.conversation = [{"role": m.role, "content": m.content} for m in conversation]
    journal = json.dumps({"conversation": outcome.conversation,
                          "transcript": outcome.transcript,
                          "events": [encode(e) for e in outcome.events],
                          "status": outcome.status, "reason": outcome.reason},
                         sort_keys=True, default=str)
    return outcome, journal


async def run_replier(env: Environment, built: Replier, factory: AgentFactory, spec: str,
                      harness: HarnessSpec, *,
                      run_id: str) -> tuple[HarnessOutcome, str, list[str]]:
    """An episode's run of a foreign agent: the conversation under ``harness``, and why the
    episode cannot judge the agent, if it cannot (see the module docstring). Settings that
    could only be honoured by tether's agent loop are refused before anything runs."""
    scenario = env.scenario
    where = scenario.source or "<scenario>"
    if scenario.model != "own":
        raise UsageError(f"{where}: model: agent {spec} is an agent of another framework, "
                         "which calls its own model; a scenario can choose the model only of "
                         "a tether.Agent (use model: own)")
    if scenario.recorded:
        raise UsageError(f"{where}: recorded: recorded tool answers stand in for a "
                         f"tether.Agent's tools; agent {spec} is an agent of another framework")
    overrides = [name for name in ("retry", "budgets", "window", "model", "policy")
                 if getattr(harness, name) is not None]
    if overrides:
        raise UsageError(f"harness {harness.name}: it sets {', '.join(overrides)} of tether's "
                         f"agent loop, which agent {spec} (another framework's) does not run; "
                         "run it under naive or default")
    pending = [built]

    def make() -> Replier:
        if pending:
            return pending.pop()
        again = build_participant(factory, env, spec)
        if not isinstance(again, Replier):
            raise UsageError(f"agent {spec}: the factory returned a Replier, then, rebuilt "
                             "after a crash, a tether.Agent")
        return again

    max_turns = int(scenario.budgets.get("max_steps") or DEFAULT_MAX_TURNS)
    outcome, journal = await converse(env, make, harness.base, max_turns=max_turns,
                                      run_id=run_id)
    unsettled = []
    if scenario.policy is not None:
        unsettled.append(f"the scenario's policy cannot govern agent {spec}: an agent of "
                         "another framework chooses and makes its calls in its own loop, "
                         "where tether's policy does not reach")
    fired = {firing.fault for firing in env.layer.firings}
    for fault in scenario.fault_plan().faults:
        if fault.label not in fired and any(
                fnmatch.fnmatchcase(target, fault.target) for target in _BEYOND_REACH):
            unsettled.append(
                f"fault {fault.label} never fired: agent {spec} is an agent of another "
                "framework, which calls its own model and talks with the user through the "
                "conversation, where a scenario's faults do not reach")
    if not env.clients_made:
        unsettled.append(f"agent {spec} took nothing from the environment (no client, "
                         "transport, base URL or gateway), so whatever its tools reached, it "
                         "was not the simulated world")
    return outcome, journal, unsettled
