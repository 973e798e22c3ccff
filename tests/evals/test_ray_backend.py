"""Campaigns on Ray: the process pool's records and results.json, byte for byte, on a two-node
cluster, through the loss of a node, from the CLI; a missing Ray is bad input."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tether.cli import app
from tether.errors import TetherError, UsageError
from tether.evals.campaign import plan, read_records, run_campaign
from tether.evals.run import run_full_campaign
from tether.evals.suites import BUILTIN_SCENARIOS

REFUND = next(p for p in BUILTIN_SCENARIOS if p.stem == "refund")
SUITES = ["retry_safety", "crash_recovery"]
SEEDS = 4
#: The agent under test, from a file of its own: its jobs' keys hash that folder only (the
#: built-in agent's keys hash all of tether's sources, which may be edited between two runs).
#: It is the refund agent, except that once ``doomed.txt`` names a node, the first episode to
#: start there says so and waits to be lost with its node, and episodes elsewhere wait until
#: that one has started (episodes are fast: the head alone would run them all while the other
#: node is still starting a worker process).
AGENT = '''"""The refund agent; one episode waits on the doomed node to be lost with it."""
import pathlib
import time

from tether.reference.refund import agent as refund

HERE = pathlib.Path(__file__).parent


def agent(env):
    _wait_if_doomed()
    return refund(env)


def _wait_if_doomed():
    import ray

    doomed = HERE / "doomed.txt"
    if not doomed.exists() or not ray.is_initialized():
        return
    if ray.get_runtime_context().get_node_id() != doomed.read_text():
        for _ in range(600):
            if (HERE / "waiting").exists():
                return
            time.sleep(0.1)
        return
    try:
        (HERE / "waiting").touch(exist_ok=False)  # the first episode here only
    except FileExistsError:
        return
    time.sleep(60)  # the node is removed meanwhile, and this process with it
    (HERE / "released").touch()
'''


class Campaign:
    """The shared small campaign, run into one folder (reproduction commands name it, so
    every backend writes to the same one, emptied first)."""

    def __init__(self, folder: Path) -> None:
        self.out, self.folder = folder / "out", folder
        (folder / "desk.py").write_text(AGENT, encoding="utf-8")
        self.agent = f"{folder / 'desk.py'}:agent"

    def run(self, **where: Any) -> tuple[bytes, list[str]]:
        """results.json and the sorted lines of episodes.jsonl."""
        shutil.rmtree(self.out, ignore_errors=True)
        run_full_campaign(self.out, scenarios=[REFUND], suites=SUITES, seeds=SEEDS,
                          agent=self.agent, shrink_failures=2, **where)
        lines = (self.out / "episodes.jsonl").read_text(encoding="utf-8").splitlines()
        return (self.out / "results.json").read_bytes(), sorted(lines)

    def cli(self, *args: str) -> bytes:
        """results.json of ``tether eval run`` with ``args`` (exit 0 asserted)."""
        shutil.rmtree(self.out, ignore_errors=True)
        result = CliRunner().invoke(app, [
            "eval", "run", str(REFUND), "--agent", self.agent, "--seeds", "2",
            *(a for s in SUITES for a in ("--suite", s)), "--out", str(self.out), *args])
        assert result.exit_code == 0, result.output
        return (self.out / "results.json").read_bytes()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return Campaign(tmp_path_factory.mktemp("campaign"))


@pytest.fixture(scope="module")
def pool(campaign: Campaign) -> tuple[bytes, list[str]]:
    """The campaign as the process pool runs it: the reference."""
    return campaign.run(workers=2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and a worker node, one CPU each, in this machine's processes."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.mark.ray
def test_a_campaign_on_a_two_node_cluster_equals_the_process_pools(
        campaign: Campaign, pool: tuple[bytes, list[str]], cluster: Any) -> None:
    """Episodes run as Ray tasks across two nodes: the same records (none differs per
    process) and the same results.json, byte for byte; the driver's connection is closed."""
    import ray

    assert campaign.run(backend="ray", address=cluster.address) == pool
    assert not ray.is_initialized()


@pytest.mark.ray
def test_the_cli_runs_a_campaign_on_ray(campaign: Campaign, cluster: Any) -> None:
    """`tether eval run --backend ray --address …`: exit 0 and the process pool's results."""
    expected = campaign.cli("--workers", "2")
    assert campaign.cli("--backend", "ray", "--address", cluster.address) == expected


@pytest.mark.ray
def test_without_an_address_a_local_ray_is_started_and_shut_down(
        campaign: Campaign, tmp_path: Path, cluster: Any) -> None:
    """No address: a Ray of its own (not the cluster running on this machine) runs the
    episodes and is shut down after; a connection already open is used and left open."""
    import ray

    jobs = plan([REFUND], ["retry_safety"], ["default"], seeds=2, agent=campaign.agent)
    assert run_campaign(jobs, tmp_path / "local.jsonl", workers=1, backend="ray") == 2
    assert not ray.is_initialized()
    ray.init(address=cluster.address)
    try:
        assert run_campaign(jobs, tmp_path / "connected.jsonl", backend="ray") == 2
        assert ray.is_initialized()
        # A task's own error is raised as the process pool raises it, not as Ray's wrapper.
        missing = plan([tmp_path / "missing.yaml"], ["retry_safety"], ["default"], seeds=1,
                       agent=campaign.agent)
        with pytest.raises(UsageError) as raised:
            run_campaign(missing, tmp_path / "missing.jsonl", backend="ray")
        assert type(raised.value) is UsageError and "missing.yaml" in str(raised.value)
    finally:
        ray.shutdown()
    assert sorted(read_records(tmp_path / "local.jsonl"), key=str) == \
        sorted(read_records(tmp_path / "connected.jsonl"), key=str)


@pytest.mark.ray
def test_relative_paths_mean_what_they_mean_to_the_driver(
        campaign: Campaign, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario named relative to the driver's folder runs on a cluster started from
    another folder: the episodes run from the driver's folder, as in a process pool."""
    shutil.copy(REFUND, tmp_path / "desk.yaml")
    monkeypatch.chdir(tmp_path)
    jobs = plan([Path("desk.yaml")], ["retry_safety"], ["default"], seeds=2,
                agent=campaign.agent)
    assert run_campaign(jobs, tmp_path / "pool.jsonl", workers=1) == 2
    assert run_campaign(jobs, tmp_path / "ray.jsonl", backend="ray",
                        address=cluster.address) == 2
    assert sorted((tmp_path / "ray.jsonl").read_text().splitlines()) == \
        sorted((tmp_path / "pool.jsonl").read_text().splitlines())

@pytest.mark.ray
def test_tasks_in_flight_are_bounded_by_the_cluster_cpus(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many items, a two-CPU cluster: IN_FLIGHT_PER_CPU × 2 tasks submitted and unfinished at
    once, never more; every item's result comes back once. (Before a node is lost: Ray counts
    a lost node's CPUs for a while.)"""
    import ray

    from tether.evals.ray_backend import IN_FLIGHT_PER_CPU, RECOUNT_EVERY, ray_unordered

    waited: list[int] = []
    real_wait = ray.wait

    def counting_wait(refs: list[Any], **options: Any) -> Any:
        waited.append(len(refs))
        return real_wait(refs, **options)

    monkeypatch.setattr(ray, "wait", counting_wait)
    items = [f"folder/{n}.txt" for n in range(RECOUNT_EVERY + 16)]  # counted again once
    results = dict(ray_unordered(os.path.basename, items, address=cluster.address))
    assert results == {n: f"{n}.txt" for n in range(len(items))}
    assert max(waited) == IN_FLIGHT_PER_CPU * 2

@pytest.mark.ray
def test_a_task_ray_cannot_complete_is_a_tether_error(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose worker process dies every time it runs: once Ray's retries are spent, a
    TetherError naming the item and saying to resume, not Ray's own exception."""
    from tether.evals import ray_backend

    monkeypatch.setattr(ray_backend, "TASK_RETRIES", 1)
    with pytest.raises(TetherError, match="run the campaign again to resume") as raised:
        list(ray_backend.ray_unordered(os._exit, [3], address=cluster.address))
    assert type(raised.value) is TetherError and "the task of 3 " in str(raised.value)

@pytest.mark.ray
def test_a_node_lost_in_the_middle_of_a_campaign_changes_nothing(
        campaign: Campaign, pool: tuple[bytes, list[str]], cluster: Any) -> None:
    """The worker node is removed while an episode runs on it: Ray runs that episode again
    on the head, the campaign finishes, each episode is in the file once, and the records and
    results.json are the process pool's."""
    worker = next(iter(cluster.worker_nodes))
    (campaign.folder / "doomed.txt").write_text(worker.node_id)
    removed: list[tuple[int, int]] = []

    def remove_worker(done: int, total: int) -> None:
        if (campaign.folder / "waiting").exists() and not removed:
            cluster.remove_node(worker, allow_graceful=False)
            removed.append((done, total))

    try:
        assert campaign.run(backend="ray", address=cluster.address,
                            progress=remove_worker) == pool
    finally:
        (campaign.folder / "doomed.txt").unlink()
        if not cluster.worker_nodes:
            cluster.add_node(num_cpus=1)
    # An episode was cut off on the lost node (it never got past its wait), mid-campaign.
    assert removed and removed[0][0] < removed[0][1]
    assert not (campaign.folder / "released").exists()
    keys = [r["key"] for r in read_records(campaign.out / "episodes.jsonl")]
    assert len(keys) == len(set(keys)) == removed[0][1]


def test_ray_missing_is_a_usage_error_naming_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray installed: a UsageError naming pip install 'tether[ray]'; the CLI exits 2
    and writes nothing. An address without --backend ray is bad input too."""
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is absent
    jobs = plan([BUILTIN_SCENARIOS[0]], ["retry_safety"], ["default"], seeds=1)
    with pytest.raises(UsageError, match=r"pip install 'tether\[ray\]'"):
        run_campaign(jobs, tmp_path / "episodes.jsonl", backend="ray")
    result = CliRunner().invoke(app, ["eval", "run", "--backend", "ray", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "pip install 'tether[ray]'" in result.output
    address = CliRunner().invoke(app, ["eval", "run", "--address", "auto", "--out",
                                       str(tmp_path / "out")])
    assert address.exit_code == 2 and "needs --backend ray" in address.output
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_an_address_where_nothing_answers_is_bad_input(tmp_path: Path) -> None:
    """--address where no cluster listens: exit 2 at once, naming the address; nothing is
    written (Ray alone would keep trying for minutes)."""
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"  # free once the socket is closed
    result = CliRunner().invoke(app, ["eval", "run", "--backend", "ray", "--address", address,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"nothing answers at the Ray address {address}" in \
        result.output
    assert not (tmp_path / "out").exists()
    jobs = plan([REFUND], ["retry_safety"], ["default"], seeds=1)
    with pytest.raises(UsageError, match="nothing answers"):
        run_campaign(jobs, tmp_path / "episodes.jsonl", backend="ray", address=address)
