"""The `tether` command: demo, runs list/show, store check."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from tether import RunContext, Runtime, SQLiteStore, VirtualClock
from tether.cli import app

runner = CliRunner()


async def two_steps(ctx: RunContext) -> str:
    await ctx.step("a", lambda: 1)
    return str(await ctx.step("b", lambda: "done"))


def make_store(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "runs.db"
    run = asyncio.run(Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1).start(two_steps))
    return path, run.run_id


def test_runs_list_and_show(tmp_path: Path) -> None:
    """list shows the run with its status; show prints each journal event."""
    path, run_id = make_store(tmp_path)
    listed = runner.invoke(app, ["runs", "list", "--store", str(path), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["run_id"], r["status"], r["events"]) for r in rows] == [(run_id, "completed", 4)]
    shown = runner.invoke(app, ["runs", "show", run_id, "--store", str(path)])
    assert shown.exit_code == 0
    for kind in ("run_started", "step", "run_finished"):
        assert kind in shown.output
    missing = runner.invoke(app, ["runs", "show", "nope", "--store", str(path)])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_runs_list_hides_memory_namespaces_unless_all(tmp_path: Path) -> None:
    """Memory namespaces are journals too; list shows them only with --all."""
    from tether.memory import Memory

    path, run_id = make_store(tmp_path)
    store = SQLiteStore(path)
    Memory(store, clock=VirtualClock()).remember("s", "k", 1, source="user", trust="user")
    store.close()
    listed = runner.invoke(app, ["runs", "list", "--store", str(path), "--json"])
    assert [r["run_id"] for r in json.loads(listed.output)] == [run_id]
    every = runner.invoke(app, ["runs", "list", "--store", str(path), "--json", "--all"])
    rows = json.loads(every.output)
    assert sorted((r["run_id"], r["workflow"]) for r in rows) == sorted(
        [(run_id, "tests.test_cli.two_steps"), ("memory:default", "tether.memory")])
    table = runner.invoke(app, ["runs", "list", "--store", str(path), "--all"])
    assert table.exit_code == 0 and "memory:default" in table.output


def test_store_check_reports_tampering(tmp_path: Path) -> None:
    """store check is ok on a sound file and exits 1 naming the run and seq when altered."""
    path, run_id = make_store(tmp_path)
    ok = runner.invoke(app, ["store", "check", "--store", str(path)])
    assert ok.exit_code == 0 and "ok" in ok.output
    db = sqlite3.connect(path)
    db.execute("UPDATE events SET body=replace(body, 'done', 'DONE') WHERE seq=3")
    db.commit()
    db.close()
    bad = runner.invoke(app, ["store", "check", "--store", str(path)])
    assert bad.exit_code == 1
    assert f"run '{run_id}' event seq 3: checksum mismatch" in bad.output.replace("\n", "")


def test_store_check_reports_a_truncated_file_without_touching_it(tmp_path: Path) -> None:
    """A file cut in half is reported as damaged (exit 1), and left exactly as it was."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    runtime = Runtime(store, clock=VirtualClock(), seed=1)

    async def many_steps(ctx: RunContext) -> int:
        for i in range(100):
            await ctx.step(f"s{i}", lambda: "x" * 300)
        return 1

    for _ in range(4):
        asyncio.run(runtime.start(many_steps))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["store", "check", "--store", str(path)])
    assert result.exit_code == 1
    assert "corrupt:" in result.output and "malformed" in result.output
    assert path.read_bytes() == data[: len(data) // 2]


def test_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a one-line error and exit 2, not a traceback."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["runs", "list", "--store", str(junk)])
    assert result.exit_code == 2 and "error:" in result.output


def test_demo_shows_naive_double_refund_and_tether_exactly_once(tmp_path: Path) -> None:
    """The main job: real processes, SIGKILL, recovery; naive pays twice, tether once."""
    result = runner.invoke(app, ["crash-demo", "--folder", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "naive: 2 refunds for one order" in result.output
    assert "tether: 1 refund" in result.output
    for harness in ("naive", "tether"):
        db = sqlite3.connect(tmp_path / harness / "bank.db")
        (count,) = db.execute("SELECT count(*) FROM refunds").fetchone()
        db.close()
        assert count == (2 if harness == "naive" else 1)
    # The killed run was recovered and finished: its note and email were sent once.
    from tether import RunStatus, SQLiteStore
    store = SQLiteStore(tmp_path / "tether" / "tether.db")
    try:
        assert [r.status for r in store.list_runs()] == [RunStatus.COMPLETED]
    finally:
        store.close()


def test_runs_show_describes_agent_events(tmp_path: Path) -> None:
    """Model calls, failures, decisions and tool retries read as one line each."""
    from tether import Agent, RateLimited, ScriptedModel
    from tether.models import reply

    attempts: list[int] = []

    def script(request: object) -> object:
        attempts.append(1)
        if len(attempts) == 1:
            raise RateLimited("429 Too Many Requests", retry_after_s=2.0)
        return reply("all done")

    path = tmp_path / "agent.db"
    agent = Agent(name="helper", model=ScriptedModel(script))  # type: ignore[arg-type]
    run = Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1).run_sync(agent, "go")
    shown = runner.invoke(app, ["runs", "show", run.run_id, "--store", str(path)])
    text = shown.output
    assert "scripted rate_limited: 429 Too Many Requests" in text
    assert "recover rate_limited → backoff" in text
    assert 'scripted → "all done"' in text


def test_version_prints_the_package_version() -> None:
    """`tether --version` prints the installed version and exits 0, before any command."""
    import tether

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"tether {tether.__version__}"
