"""Commands that read a store never create one: a mistyped path, an empty file or a file that
is not a tether store is a one-line error (exit 2; `store check` exits 1 for a damaged file)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether import RunContext, Runtime, SQLiteStore, VirtualClock
from tether.cli import app
from tether.errors import CorruptJournal, UsageError
from tether.store.memory import MemoryStore
from tether.store.open import open_store

runner = CliRunner()

READERS = [["runs", "list"], ["runs", "show", "run-1"], ["trace", "run-1"],
           ["approvals", "list"], ["store", "check"], ["approve", "run-1"], ["deny", "run-1"]]


def invoke(args: list[str], store: Path | str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--store", str(store)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result.exit_code, result.output.strip()


async def one_step(ctx: RunContext) -> int:
    return int(await ctx.step("a", lambda: 1))


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_mistyped_store_path_is_refused_and_not_created(tmp_path: Path,
                                                           args: list[str]) -> None:
    """Every reading command exits 2 naming the path and the flag, and creates no file."""
    missing = tmp_path / "runs.db"
    code, output = invoke(args, missing)
    assert code == 2
    assert output == (f"error: no store at {missing}: the file does not exist (nothing was "
                      "created); name an existing store with --store PATH or TETHER_STORE")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_zero_byte_store_is_not_a_healthy_empty_store(tmp_path: Path, args: list[str]) -> None:
    """A store truncated to zero bytes is reported as not a store (store check: corrupt, exit
    1; the others: exit 2) and stays zero bytes."""
    empty = tmp_path / "runs.db"
    empty.write_bytes(b"")
    code, output = invoke(args, empty)
    if args == ["store", "check"]:
        assert code == 1 and output.startswith(f"corrupt: {empty} is not a tether store: the "
                                               "file is empty (0 bytes)")
    else:
        assert code == 2 and output.startswith(f"error: {empty} is not a tether store")
    assert empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_a_foreign_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    """A SQLite database without tether's tables is not a store, and gains none."""
    other = tmp_path / "app.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (id INTEGER)")
    db.commit()
    db.close()
    before = other.read_bytes()
    code, output = invoke(["store", "check"], other)
    assert code == 1 and "a SQLite database but not a tether store (tables: users" in output
    code, output = invoke(["runs", "list"], other)
    assert code == 2 and "not a tether store" in output
    assert other.read_bytes() == before


def test_a_directory_or_markup_in_the_path_is_a_plain_error(tmp_path: Path) -> None:
    """A directory is refused; a path that looks like rich markup is printed as written."""
    code, output = invoke(["runs", "list"], tmp_path)
    assert code == 2 and "it is a directory" in output
    odd = tmp_path / "[red]x[/red].db"
    code, output = invoke(["store", "check"], odd)
    assert code == 2 and f"no store at {odd}" in output


def test_reading_an_existing_store_still_works(tmp_path: Path) -> None:
    """A real store opens read-side as before: listed, shown and checked."""
    path = tmp_path / "runs.db"
    run = asyncio.run(Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1).start(one_step))
    code, output = invoke(["runs", "show", run.run_id], path)
    assert code == 0 and "run_finished" in output
    assert invoke(["store", "check"], path) == (0, f"{path}: ok")


def test_open_store_create_false(tmp_path: Path) -> None:
    """open_store(create=False) opens only existing stores; the default still creates."""
    with pytest.raises(UsageError, match="no store at"):
        open_store(f"sqlite:///{tmp_path / 'a.db'}", create=False)
    (tmp_path / "zero.db").write_bytes(b"")
    with pytest.raises(CorruptJournal, match="empty"):
        open_store(str(tmp_path / "zero.db"), create=False)
    (tmp_path / "text.db").write_text("name: not a database\n")
    with pytest.raises(CorruptJournal, match="not a SQLite database"):
        open_store(str(tmp_path / "text.db"), create=False)
    assert isinstance(open_store("memory:", create=False), MemoryStore)
    created = open_store(str(tmp_path / "new.db"))
    assert created.list_runs() == []
    assert open_store(str(tmp_path / "new.db"), create=False).list_runs() == []


@pytest.mark.postgres
def test_open_store_create_false_on_postgres(postgres_dsn: str) -> None:
    """A PostgreSQL database without tether's schema is 'no store', and gets no schema."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS tether_must_exist")
        admin.execute("CREATE DATABASE tether_must_exist")
    url = postgres_dsn.rsplit("/", 1)[0] + "/tether_must_exist"  # the fixture's URL form
    with pytest.raises(UsageError, match=r"no store at .* schema tether: the database has no"):
        open_store(url, create=False)
    with psycopg.connect(url) as db:
        row = db.execute("SELECT to_regclass('tether.meta') IS NULL").fetchone()
        assert row is not None and row[0]
    open_store(url).close()
    open_store(url, create=False).close()


@pytest.mark.parametrize("args", [
    ["eval", "run", "--seeds", str(10**23)], ["eval", "run", "--seeds", "0"],
    ["eval", "run", "--workers", "-1"], ["demo", "--seeds", str(10**9)], ["demo", "--workers", "0"],
], ids=" ".join)
def test_campaign_sizes_are_bounded(tmp_path: Path, args: list[str]) -> None:
    """A seed or worker count out of range exits 2 before any job is built (10**23 seeds used
    to build the job list until memory ran out)."""
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_damaged_store_gains_no_wal_or_shm_files(tmp_path: Path, args: list[str]) -> None:
    """A real store cut in half is reported as damaged and left exactly as it was: no -wal or
    -shm file appears beside it (the message says nothing was changed)."""
    path = tmp_path / "runs.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA user_version=1")
    db.execute("CREATE TABLE runs (id TEXT)")
    db.execute("CREATE TABLE events (id TEXT, body TEXT)")
    db.executemany("INSERT INTO events VALUES (?, ?)", [(str(i), "x" * 500) for i in range(400)])
    db.commit()
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    before = path.read_bytes()
    code, _ = invoke(args, path)
    assert code in (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("bad", ["scenario", "baseline"])
def test_eval_run_with_bad_input_creates_nothing(tmp_path: Path, bad: str) -> None:
    """A scenario that does not load, or a baseline that is not results, exits 2 before the
    campaign starts: --out is not created and holds no episodes."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nagent: refund\ntask: t\nbudgets: {max_steps: true}\n")
    out = tmp_path / "out"
    args = ["eval", "run", "--seeds", "1", "--suite", "latency_variance", "--harness", "naive",
            "--out", str(out), "--workers", "1"]
    args += [str(broken)] if bad == "scenario" else ["--baseline", str(broken)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and str(broken) in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "replay"])
@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999999"])
def test_a_seed_out_of_range_exits_2(command: str, seed: str) -> None:
    """--seed is 0 <= seed < 2**63: anything else is bad input (exit 2), never a run."""
    story = Path(__file__).resolve().parents[1] / "examples" / "scenarios" / \
        "refund_timeout_after_commit.yaml"
    result = runner.invoke(app, ["sim", command, str(story), "--seed", seed])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output and "PASS" not in result.output, result.output
