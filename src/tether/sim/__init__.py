"""The deterministic simulator: test your own agent in seeded, virtual-time worlds.

The public names, imported on first use (``import tether.sim`` stays cheap)::

    from tether.sim import Environment, load_scenario, run_episode

    result = run_episode(load_scenario("scenarios/refund.yaml"), seed=7,
                         agent="myproject.agents:support_agent")
    assert result.ok, [v for v in result.verdicts if not v.holds]

An agent factory receives an :class:`Environment` (clients of the simulated services, the
simulated user, the clock) and returns a :class:`tether.Agent`; see
:mod:`tether.sim.environment` and :mod:`tether.sim.agent_ref`.
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real types for checkers and editors; imported lazily at run time
    from tether.sim.agent_ref import load_agent_factory
    from tether.sim.calls import ServiceCall
    from tether.sim.environment import Environment, ServiceClient
    from tether.sim.episode import EpisodeResult, environment_for, run_episode
    from tether.sim.harness_spec import HarnessSpec, load_harness_file
    from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict

__all__ = [
    "Environment",
    "EpisodeResult",
    "HarnessSpec",
    "Scenario",
    "ServiceCall",
    "ServiceClient",
    "environment_for",
    "load_agent_factory",
    "load_harness_file",
    "load_scenario",
    "run_episode",
    "scenario_from_dict",
]

_WHERE = {
    "Environment": "tether.sim.environment", "ServiceClient": "tether.sim.environment",
    "EpisodeResult": "tether.sim.episode", "environment_for": "tether.sim.episode",
    "HarnessSpec": "tether.sim.harness_spec", "load_harness_file": "tether.sim.harness_spec",
    "run_episode": "tether.sim.episode", "Scenario": "tether.sim.scenario",
    "load_scenario": "tether.sim.scenario", "scenario_from_dict": "tether.sim.scenario",
    "ServiceCall": "tether.sim.calls", "load_agent_factory": "tether.sim.agent_ref",
}


if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
