"""A pytest plugin for reliability tests: the ``tether_sim`` fixture.

Installed with tether (entry point ``pytest11``), so a project can write::

    import pytest

    @pytest.mark.parametrize("seed", range(20))
    def test_refund_exactly_once(tether_sim, seed):
        result = tether_sim.run("scenarios/refund_timeout.yaml", seed=seed)
        tether_sim.assert_ok(result)

``tether_sim.run`` runs one episode (default harness ``default``); ``agent=`` tests another agent
than the scenario names (a spec such as ``"myproject.agents:support_agent"`` or the factory
itself); ``assert_ok`` fails the test with every broken invariant and the command that replays
the episode; ``suite`` runs a base scenario under one of the five suites, with its faults chosen
from what the agent does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.evals.suites import variant
from tether.sim.episode import AgentArg, EpisodeResult, run_episode
from tether.sim.scenario import Scenario, load_scenario

__all__ = ["TetherSim", "tether_sim"]


class TetherSim:
    """Runs simulated episodes inside a test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[str, Path] = {}

    def scenario(self, scenario: str | Path | Scenario) -> Scenario:
        if isinstance(scenario, Scenario):
            return scenario
        path = Path(scenario)
        if not path.is_absolute():
            path = self.root / path
        loaded = load_scenario(path)
        self._paths[loaded.name] = path
        return loaded

    def run(self, scenario: str | Path | Scenario, *, seed: int = 0,
            harness: str = "default", agent: AgentArg = None) -> EpisodeResult:
        """One episode of ``scenario`` (a file, relative to the test's rootdir, or an object),
        with ``agent`` instead of the scenario's when given."""
        return run_episode(self.scenario(scenario), seed, harness, agent=agent)

    def suite(self, scenario: str | Path | Scenario, suite: str, *, seed: int = 0,
              harness: str = "default", agent: AgentArg = None) -> EpisodeResult:
        """One episode of ``scenario`` under a reliability suite (``retry_safety`` …)."""
        return run_episode(variant(self.scenario(scenario), suite, seed, agent=agent), seed,
                           harness, agent=agent)

    def assert_ok(self, result: EpisodeResult) -> None:
        """Fail with the broken invariants and a replay command unless all held."""
        if result.ok:
            return
        broken = "\n".join(f"  {v.invariant}: {v.detail}" for v in result.verdicts
                           if not v.holds)
        path = self._paths.get(result.scenario.split("/")[0], "<scenario>")
        pytest.fail(f"{result.scenario} seed {result.seed} ({result.harness}) broke:\n{broken}\n"
                    f"replay: tether sim run {path} --seed {result.seed} --harness "
                    f"{result.harness} --agent {result.agent}", pytrace=False)


@pytest.fixture
def tether_sim(request: pytest.FixtureRequest) -> TetherSim:
    """A :class:`TetherSim` rooted at the test session's rootdir."""
    return TetherSim(Path(str(request.config.rootpath)))
