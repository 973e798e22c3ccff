"""A pytest plugin for reliability tests: the ``tether_sim`` fixture.

Installed with tether (entry point ``pytest11``), so a project can write::

    import pytest

    @pytest.mark.parametrize("seed", range(20))
    def test_refund_exactly_once(tether_sim, seed):
        result = tether_sim.run("scenarios/refund_timeout.yaml", seed=seed)
        tether_sim.assert_ok(result)

``tether_sim.run`` runs one episode (default harness ``default``); ``agent=`` tests another agent
than the scenario names (a spec such as ``"myproject.agents:support_agent"`` or the factory
itself); ``suite`` runs a base scenario under one of the five suites, with its faults chosen
from what the agent does. ``assert_ok`` fails the test when an invariant broke or the task was
not done as asked (``task=False`` checks safety only), printing the command that replays the
episode from a repro file (a suite's variant included), and *skips* an episode that could not
judge the agent — a suite whose faults never reached it — as inconclusive: neither a pass nor
a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.evals.shrink import Shrunk, write_reproduction
from tether.evals.suites import variant
from tether.sim.episode import AgentArg, EpisodeResult, run_episode
from tether.sim.scenario import Scenario, load_scenario

__all__ = ["TetherSim", "tether_sim"]


class TetherSim:
    """Runs simulated episodes inside a test."""

    def __init__(self, root: Path, repro_dir: Path) -> None:
        self.root, self.repro_dir = root, repro_dir
        self._paths: dict[str, Path] = {}
        # What each result was run from, so a failure can be written out and replayed.
        self._runs: dict[int, tuple[Scenario, str, tuple[str, ...], frozenset[str]]] = {}

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
            harness: str = "default", agent: AgentArg = None,
            harness_files: tuple[str, ...] = ()) -> EpisodeResult:
        """One episode of ``scenario`` (a file, relative to the test's rootdir, or an object),
        with ``agent`` instead of the scenario's when given."""
        loaded = self.scenario(scenario)
        result = run_episode(loaded, seed, harness, agent=agent, harness_files=harness_files)
        self._runs[id(result)] = (loaded, harness, harness_files, frozenset())
        return result

    def suite(self, scenario: str | Path | Scenario, suite: str, *, seed: int = 0,
              harness: str = "default", agent: AgentArg = None,
              harness_files: tuple[str, ...] = ()) -> EpisodeResult:
        """One episode of ``scenario`` under a reliability suite (``retry_safety`` …)."""
        base = self.scenario(scenario)
        varied = variant(base, suite, seed, agent=agent)
        result = run_episode(varied, seed, harness, agent=agent, harness_files=harness_files)
        added = frozenset(f.label for f in varied.fault_plan().faults[len(base.faults):])
        self._runs[id(result)] = (varied, harness, harness_files, added)
        return result

    def assert_ok(self, result: EpisodeResult, *, task: bool = True) -> None:
        """Fail unless every invariant held and (with ``task``) the task was done as asked,
        with the broken checks and a command that replays the episode; skip, as
        inconclusive, an episode that could not judge the agent (a suite whose faults never
        reached it, or a replay that left its recording) — neither a pass nor a failure."""
        scenario, harness, files, added = self._runs.get(id(result), (None, "", (), frozenset()))
        fired = {f.fault for f in result.firings}
        if result.ok and (result.inconclusive or (added and not added & fired)):
            why = "; ".join(result.inconclusive) or \
                f"none of the suite's faults ({', '.join(sorted(added))}) reached the agent"
            pytest.skip(f"inconclusive: {result.scenario} seed {result.seed}: {why}")
        broken = [f"  {v.invariant}: {v.detail}" for v in result.verdicts if not v.holds]
        if task and result.ok and result.checked and not result.done:
            broken += [f"  task not done (status {result.status}): {v.invariant}: {v.detail}"
                       for v in result.task_checks if not v.holds] or \
                [f"  task not done: the run ended {result.status}: {result.reason}"]
        if not broken:
            return
        replay = self._replay(result, scenario, harness, files)
        pytest.fail(f"{result.scenario} seed {result.seed} ({result.harness}) broke:\n"
                    + "\n".join(broken) + f"\nreplay: {replay}", pytrace=False)

    def _replay(self, result: EpisodeResult, scenario: Scenario | None, harness: str,
                files: tuple[str, ...]) -> str:
        """The command that replays ``result``: the episode's own scenario (a suite's variant
        included) written to a file naming its agent."""
        if scenario is None:
            return "(run through tether_sim.run or .suite to get a replay command)"
        shrunk = Shrunk(scenario, result.seed, harness or result.harness, (), 0, result.agent,
                        files)
        try:
            _, command = write_reproduction(shrunk, self.repro_dir)
        except TetherError as exc:
            return f"(not replayable from a file: {exc})"
        return command


@pytest.fixture
def tether_sim(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> TetherSim:
    """A :class:`TetherSim` rooted at the test session's rootdir; failures are written as
    repro files under a temporary folder (the replay command names it)."""
    return TetherSim(Path(str(request.config.rootpath)), tmp_path_factory.mktemp("tether-repro"))
