"""The work queue's commands in process: `tether runs start`, `tether workers list`, the
queue and lease columns of `tether runs list`, and bad input to `tether worker` (exit 2)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli import app
from tether.clock import SystemClock
from tether.events import RunStarted, RunStatus
from tether.runtime.runtime import Runtime
from tether.runtime.worker import Worker
from tether.store.base import Lease, WorkerInfo
from tether.store.sqlite import SQLiteStore
from tether.worker_cli import load_workflow, parse_queues

FLOWS = '''
from tether import RunContext, workflow


@workflow(name="double")
async def double(ctx: RunContext, n: int) -> int:
    return int(await ctx.step("double", lambda: n * 2))


async def plain(ctx: RunContext) -> str:
    return "plain"


NOT_A_WORKFLOW = 42
'''

AGENT = '''
name: echoer
instructions: Echo what you are told.
model: {provider: scripted, script: tests.sessions.helpers_agents:script}
tools: [tests.sessions.helpers_agents:echo]
'''


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A workflow file, named by path in the commands."""
    path = tmp_path / "flows_for_worker_cli.py"
    path.write_text(FLOWS)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_runs_start_enqueues_and_prints_the_run_id(tmp_path: Path, flows: Path) -> None:
    """The printed id names a queued run on the queue asked for, with the JSON input; a
    second start under the same --run-id is refused (exit 2)."""
    db = str(tmp_path / "runs.db")
    code, out = invoke("runs", "start", f"{flows}:double", "--input", "21", "--queue", "math",
                       "--run-id", "r1", "--store", db)
    assert (code, out.strip()) == (0, "r1")
    store = SQLiteStore(db)
    info = store.get_run("r1")
    assert info is not None and (info.status, info.queue, info.workflow) == (
        RunStatus.QUEUED, "math", "double")
    first = store.read("r1")[0]
    assert isinstance(first, RunStarted) and first.input == 21
    store.close()
    code, out = invoke("runs", "start", f"{flows}:double", "--run-id", "r1", "--store", db)
    assert code == 2 and "already exists" in out


@pytest.mark.parametrize(("spec", "said"), [
    ("no_such_module_for_worker_cli:flow", "no module 'no_such_module_for_worker_cli'"),
    ("{flows}:missing", "has no 'missing'"),
    ("{flows}:NOT_A_WORKFLOW", "expected a workflow"),
    ("not-a-spec", "expected package.module:attr"),
    ("missing-agent.yaml", "no agent file"),
])
def test_a_workflow_that_does_not_load_is_exit_2(tmp_path: Path, flows: Path, spec: str,
                                                 said: str) -> None:
    """runs start and worker both say what is wrong with --workflow, exit 2, and create no
    run."""
    spec = spec.format(flows=flows)
    db = str(tmp_path / "runs.db")
    for args in (["runs", "start", spec], ["worker", "--workflow", spec]):
        code, out = invoke(*args, "--store", db)
        assert code == 2 and said in " ".join(out.split()), out
    assert not Path(db).exists() or SQLiteStore(db).list_runs() == []


@pytest.mark.parametrize("value", ["emails=", "=2", "emails=0", "emails=two", "emails=-1"])
def test_a_malformed_queue_option_is_exit_2(tmp_path: Path, flows: Path, value: str) -> None:
    """--queue takes NAME=LIMIT with a limit of 1 or more."""
    code, out = invoke("worker", "--workflow", f"{flows}:double", "--queue", value,
                       "--store", str(tmp_path / "runs.db"))
    assert code == 2 and "expected NAME=LIMIT" in " ".join(out.split()), out


def test_queue_options_parse_to_limits() -> None:
    """NAME=LIMIT gives that limit, a bare NAME the worker's concurrency, none: every queue;
    a queue named twice is refused."""
    assert parse_queues(["a=2", "b"], 4) == {"a": 2, "b": 4}
    assert parse_queues([], 4) is None
    with pytest.raises(Exception, match="named twice"):
        parse_queues(["a=1", "a=2"], 4)


def test_a_store_that_does_not_open_is_exit_2(tmp_path: Path, flows: Path) -> None:
    """An unknown URL scheme or a path that cannot be created is one line and exit 2."""
    for store in ("nosuch://x", str(tmp_path / "no" / "such" / "dir" / "runs.db")):
        for args in (["worker", "--workflow", f"{flows}:double"],
                     ["runs", "start", f"{flows}:double"]):
            code, out = invoke(*args, "--store", store)
            assert code == 2 and "error:" in out and "Traceback" not in out, out


def test_bad_input_json_is_exit_2(tmp_path: Path, flows: Path) -> None:
    """--input must be JSON; the error says how to quote a string."""
    code, out = invoke("runs", "start", f"{flows}:double", "--input", "hello",
                       "--store", str(tmp_path / "runs.db"))
    assert code == 2 and "--input is not JSON" in out


def test_workers_list_shows_who_is_alive_and_what_each_holds(tmp_path: Path) -> None:
    """A worker seen lately is alive and lists the runs it holds a live lease on; one not
    seen for longer than the lease time is not alive; --json carries the same."""
    db = str(tmp_path / "runs.db")
    store = SQLiteStore(db)
    now = time.time()
    store.beat(WorkerInfo("w-live", "h1", 11, ("emails",), 2, now - 100, now - 1))
    store.beat(WorkerInfo("w-dead", "h2", 22, (), 4, now - 500, now - 400))
    store.append("held", [RunStarted(seq=1, at=now, workflow="wf", seed=1)],
                 expected_last_seq=0, lease=Lease("held", "w-live", 1, now + 60))
    store.close()
    code, out = invoke("workers", "list", "--store", db, "--json")
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["w-live"]["alive"], rows["w-live"]["runs"]) == (True, ["held"])
    assert (rows["w-dead"]["alive"], rows["w-dead"]["runs"]) == (False, [])
    assert rows["w-live"]["queues"] == ["emails"] and rows["w-dead"]["pid"] == 22
    code, out = invoke("workers", "list", "--store", db)
    lines = {line.split()[1]: line for line in out.splitlines() if "│ w-" in line}
    assert "yes" in lines["w-live"] and "held" in lines["w-live"] and "no" in lines["w-dead"]


def test_workers_list_on_a_missing_store_is_exit_2(tmp_path: Path) -> None:
    """Reading a store that is not there creates nothing."""
    code, out = invoke("workers", "list", "--store", str(tmp_path / "none.db"))
    assert code == 2 and "no store at" in out and not (tmp_path / "none.db").exists()


def test_runs_list_shows_queue_and_lease_state(tmp_path: Path, flows: Path) -> None:
    """runs list has a queue column; --json carries queue, wake_at and the lease state
    (live, expired, none)."""
    db = str(tmp_path / "runs.db")
    invoke("runs", "start", f"{flows}:double", "--input", "1", "--queue", "math",
           "--run-id", "queued", "--store", db)
    store = SQLiteStore(db)
    now = time.time()
    store.append("stale", [RunStarted(seq=1, at=now, workflow="wf", seed=1)],
                 expected_last_seq=0, lease=Lease("stale", "gone", 1, now - 5))
    store.append("live", [RunStarted(seq=1, at=now, workflow="wf", seed=1)],
                 expected_last_seq=0, lease=Lease("live", "busy", 1, now + 600))
    store.close()
    code, out = invoke("runs", "list", "--store", db, "--json")
    by_id = {r["run_id"]: r for r in json.loads(out)}
    assert (by_id["queued"]["queue"], by_id["queued"]["status"], by_id["queued"]["lease"]) == (
        "math", "queued", "none")
    assert by_id["queued"]["wake_at"] is not None
    assert (by_id["stale"]["lease"], by_id["live"]["lease"]) == ("expired", "live")
    code, out = invoke("runs", "list", "--store", db, "--status", "queued")
    rows = [line for line in out.splitlines() if "│ queued" in line]
    assert code == 0 and len(rows) == 1 and "math" in rows[0]


def test_an_agent_file_is_a_workflow_by_its_name(tmp_path: Path) -> None:
    """runs start AGENT.yaml enqueues a run of the agent (its name is the workflow), and a
    worker given the same file executes it."""
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT)
    db = str(tmp_path / "runs.db")
    code, out = invoke("runs", "start", str(agent), "--input", '"say hi"', "--run-id", "a1",
                       "--store", db)
    assert code == 0, out
    store = SQLiteStore(db)
    info = store.get_run("a1")
    assert info is not None and info.workflow == "echoer"
    runtime = Runtime(store, clock=SystemClock(), workflows=[load_workflow(str(agent))])

    async def serve() -> None:
        stop = asyncio.Event()
        worker = Worker(runtime, poll_s=0.02, on_outcome=lambda outcome: stop.set())
        await asyncio.wait_for(worker.run(stop), 20)

    asyncio.run(serve())
    info = store.get_run("a1")
    assert info is not None and info.status is RunStatus.COMPLETED
    store.close()
