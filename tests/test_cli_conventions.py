"""The conventions every `tether` command keeps: errors on stderr (JSON under --json), output
that follows the terminal's width and is never wrapped when piped, --json on every command that
prints results, --no-color, counts checked, choices listed in --help.

The real CLI runs as a process, piped and on a pseudo-terminal of 80 columns; the error paths
also run in-process through typer's runner, whose stdout and stderr are kept apart."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.cells import cell_len
from typer.testing import CliRunner

from tether import RunContext, Runtime, SQLiteStore, VirtualClock
from tether.agent.agent import Task
from tether.cli import app

from .policy.approval_app import RUN_ID as HELD_RUN
from .policy.approval_app import build_agent

ROOT = Path(__file__).resolve().parent.parent
CRASH_SCENARIO = ROOT / "examples" / "scenarios" / "refund_crash_after_refund.yaml"
AGENT_FILE = ROOT / "examples" / "support_chat" / "agent.yaml"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: A run id longer than any table column that fits in 110 columns.
LONG_RUN_ID = "run-" + "-".join(f"part{n:02d}" for n in range(20))

#: Commands that print results but have no --json, and why.
NO_JSON = {
    "serve run": "a long-running HTTP server: its only stdout is the address it listens on, "
                 "and what it serves is already JSON",
    "view": "a long-running local web viewer (tether view): it prints the address it serves",
}

runner = CliRunner()


# -- running the CLI ---------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                        "TETHER_STORE")}
    env.update(COLUMNS="80", TERM="xterm-256color", **extra)
    return env


def piped(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a process whose stdout and stderr are pipes (as in CI or `| less`)."""
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], capture_output=True,
                          text=True, env=_env(**env), cwd=cwd, timeout=120, check=False)


def on_tty(*args: str, columns: int = 80, cwd: Path = ROOT, **env: str) -> tuple[int, str]:
    """The CLI on a pseudo-terminal ``columns`` wide (stdout and stderr both on it): its exit
    code and everything it showed, line ends as printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=_env(**env), cwd=cwd)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(timeout=30), shown.decode().replace("\r\n", "\n")


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result


def widest(text: str) -> int:
    return max(cell_len(ANSI.sub("", line)) for line in text.splitlines())


# -- fixtures ----------------------------------------------------------------------------------

async def two_steps(ctx: RunContext) -> str:
    await ctx.step("a", lambda: 1)
    return str(await ctx.step("b", lambda: "done"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A SQLite store holding one completed run whose id is longer than 110 columns allow a
    table's column."""
    path = tmp_path / "runs.db"
    asyncio.run(Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1).start(
        two_steps, run_id=LONG_RUN_ID))
    yield path


@pytest.fixture
def held(tmp_path: Path) -> Path:
    """A store with a refund held for a supervisor's approval."""
    path = tmp_path / "held.db"
    agent = build_agent(str(tmp_path / "ledger.db"))
    asyncio.run(Runtime(SQLiteStore(path), clock=VirtualClock(), seed=1).start(
        agent, Task(text="refund A-7", principal="agent-1"), run_id=HELD_RUN))
    return path


@pytest.fixture
def long_scenario(tmp_path: Path) -> Path:
    """The crash-after-refund scenario (naive fails it, so a replay command is printed) under
    a folder whose name makes that command longer than 80 columns."""
    folder = tmp_path / "scenarios-kept-under-a-folder-with-a-rather-long-descriptive-name"
    folder.mkdir()
    return Path(shutil.copy(CRASH_SCENARIO, folder / CRASH_SCENARIO.name))


# -- width ---------------------------------------------------------------------------------------

def test_piped_a_replay_command_and_the_keys_stay_whole(long_scenario: Path) -> None:
    """Piped at COLUMNS=80, the replay command and each effect's key are one line each, as
    they must be pasted."""
    ran = piped("sim", "run", str(long_scenario), "--harness", "naive")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # naive pays twice: FAIL
    command = f"tether sim replay {long_scenario} --seed 0 --harness naive"
    assert len(command) > 80
    assert f"replay: {command}" in ran.stdout.splitlines()
    effects = [line for line in ran.stdout.splitlines() if line.startswith("  effect ")]
    assert "  effect 1: payments.refund refund:ch_0001" in effects
    assert "\x1b" not in ran.stdout


def test_piped_a_table_does_not_fold_a_long_run_id(store: Path) -> None:
    """`runs list` and `runs show` piped: the run id is printed whole on one line, however
    long (tables take the width they need instead of 80 or 110 columns)."""
    listed = piped("runs", "list", "--store", str(store))
    assert listed.returncode == 0, listed.stderr
    assert any(LONG_RUN_ID in line for line in listed.stdout.splitlines()), listed.stdout
    shown = piped("runs", "show", LONG_RUN_ID, "--store", str(store))
    assert f"journal of {LONG_RUN_ID}" in shown.stdout.splitlines(), shown.stdout


@pytest.mark.parametrize("columns", [80, 200], ids=["tty80", "tty200-COLUMNS80"])
def test_on_an_80_column_terminal_nothing_is_wider(long_scenario: Path, store: Path,
                                                   columns: int) -> None:
    """On a terminal (COLUMNS=80, whatever the window reports) every line fits in 80 columns:
    an episode with its trace, the runs table, a journal, an error."""
    for args in (["sim", "run", str(long_scenario), "--harness", "naive"],
                 ["runs", "list", "--store", str(store)],
                 ["runs", "show", LONG_RUN_ID, "--store", str(store)],
                 ["runs", "show", "x" * 120, "--store", str(store)]):
        code, shown = on_tty(*args, columns=columns)
        assert code in (0, 1, 2), shown
        assert "\x1b[" in shown, "not detected as a terminal: no styling"
        assert widest(shown) <= 80, "\n".join(
            line for line in shown.splitlines() if cell_len(ANSI.sub("", line)) > 80)


# -- colour --------------------------------------------------------------------------------------

def test_no_color_and_NO_COLOR_print_no_ansi_escape(long_scenario: Path, store: Path) -> None:
    """On a terminal, --no-color (root option) and NO_COLOR turn off every escape, in results
    and errors alike; without them the same output is styled."""
    episode = ["sim", "run", str(long_scenario), "--harness", "naive"]
    error = ["runs", "show", "nope", "--store", str(store)]
    for args in (episode, error):
        _, styled = on_tty(*args)
        assert "\x1b[" in styled
        _, flag = on_tty("--no-color", *args)
        _, env = on_tty(*args, NO_COLOR="1")
        for shown in (flag, env):
            assert "\x1b" not in shown, shown[:400]
            assert ANSI.sub("", styled).split() == shown.split()
    _, usage = on_tty("--no-color", "demo", "--seeds", "0")
    assert "\x1b" not in usage and "--seeds" in usage


# -- errors --------------------------------------------------------------------------------------

def _error_cases(tmp: Path, store: Path) -> list[tuple[list[str], str]]:
    missing = str(tmp / "missing.db")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n", encoding="utf-8")
    return [
        (["runs", "list", "--store", missing], "no store at"),
        (["runs", "show", "nope", "--store", str(store)], "no run 'nope'"),
        (["trace", "nope", "--store", str(store)], "no run 'nope'"),
        (["store", "check", "--store", missing], "no store at"),
        (["approvals", "list", "--store", missing], "no store at"),
        (["approve", "run-1", "--store", missing], "no store at"),
        (["deny", "run-1", "--store", missing], "no store at"),
        (["workers", "list", "--store", missing], "no store at"),
        (["runs", "start", "no_such_module_x:flow", "--store", str(store)], "no_such_module_x"),
        (["worker", "--store", str(store), "--workflow", "no_such_module_x:flow"],
         "no_such_module_x"),
        (["sim", "run", str(tmp / "nope.yaml")], "nope.yaml"),
        (["sim", "replay", str(bad_yaml)], "bad.yaml"),
        (["sim", "compare", str(tmp / "a.json"), str(tmp / "b.json")], "a.json"),
        (["sim", "capture", "nope", "--store", missing], "missing.db"),
        (["sim", "verdict", "--url", "http://127.0.0.1:9/"], "127.0.0.1:9"),
        (["eval", "run", "--suite", "nope", "--out", str(tmp / "out")], "unknown suite(s) nope"),
        (["agent", "check", str(bad_yaml)], "bad.yaml"),
        (["agent", "show", str(tmp / "nope.yaml")], "nope.yaml"),
        (["serve", "keys", "add", "--tenant", "t", "--principal", "p", "--keys", str(bad_yaml)],
         "bad.yaml"),
        # click's own: a count out of range, an unknown command, a missing option
        (["demo", "--seeds", "0"], "--seeds"),
        (["eval", "run", "--seeds", "0"], "--seeds"),
        (["nope"], "No such command 'nope'"),
        (["runs", "start", "x:y"], "--store"),
    ]


def test_every_error_goes_to_stderr_and_exits_2(tmp_path: Path, store: Path) -> None:
    """Bad input: exit 2, one `error: …` on stderr naming what was wrong, nothing on stdout,
    no traceback."""
    for args, named in _error_cases(tmp_path, store):
        result = invoke(*args)
        where = " ".join(args)
        assert result.exit_code == 2, (where, result.output)
        assert result.stdout == "", (where, result.stdout)
        assert "error: " in result.stderr and named in result.stderr, (where, result.stderr)
        assert "Traceback" not in result.stderr, where


def test_under_json_an_error_is_json_on_stderr(tmp_path: Path, store: Path) -> None:
    """With --json, every error is one JSON object on stderr ({"error": {"type", "message",
    "exit_code"}}) and stdout stays empty."""
    checked = 0
    for args, named in _error_cases(tmp_path, store):
        command = typer.main.get_command(app)
        if not _takes_json(command, args):
            continue
        result = invoke(*args, "--json")
        where = " ".join(args)
        assert result.exit_code == 2, (where, result.output)
        assert result.stdout == "", (where, result.stdout)
        error = json.loads(result.stderr)["error"]
        assert error["exit_code"] == 2 and error["type"], (where, error)
        assert named in error["message"], (where, error)
        checked += 1
    assert checked >= 15


def test_a_subprocess_keeps_stdout_clean_on_error(tmp_path: Path) -> None:
    """The real process, piped: the error is on stderr alone, plain or JSON."""
    missing = str(tmp_path / "missing.db")
    plain = piped("runs", "list", "--store", missing)
    assert (plain.returncode, plain.stdout) == (2, "")
    assert plain.stderr.startswith(f"error: no store at {missing}")
    as_json = piped("store", "check", "--store", missing, "--json")
    assert (as_json.returncode, as_json.stdout) == (2, "")
    assert json.loads(as_json.stderr)["error"]["type"] == "UsageError"
    usage = piped("eval", "run", "--seeds", "0", "--json")
    assert (usage.returncode, usage.stdout) == (2, "")
    assert json.loads(usage.stderr)["error"]["param"] == "--seeds"


def test_markup_in_an_error_survives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The install hint `pip install 'tether[postgres]'` prints as written ([postgres] is not
    read as rich markup), plain and JSON; so does a path that looks like markup."""
    # As if psycopg were not installed: `import psycopg` fails, and the PostgreSQL store module
    # (imported for real first, so no half-imported copy outlives this test) says it has none.
    import tether.store.postgres

    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setattr(tether.store.postgres, "_HAVE_PSYCOPG", False)
    url = "postgresql://tether@127.0.0.1:1/tether"
    for args in (["runs", "list", "--store", url], ["store", "check", "--store", url],
                 ["worker", "--store", url, "--workflow", "tests.test_cli_conventions:two_steps"],
                 ["sim", "capture", "r", "--store", url]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "pip install 'tether[postgres]'" in result.stderr, result.stderr
    as_json = invoke("runs", "list", "--store", url, "--json")
    assert "pip install 'tether[postgres]'" in json.loads(as_json.stderr)["error"]["message"]
    odd = tmp_path / "[bold]runs[/bold].db"
    result = invoke("runs", "list", "--store", str(odd))
    assert f"no store at {odd}" in result.stderr


# -- counts and choices ----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["demo", "--seeds", "0"], ["demo", "--seeds", "-3"], ["demo", "--workers", "0"],
    ["eval", "run", "--seeds", "0"], ["eval", "run", "--workers", "-1"],
    ["eval", "run", "--backend", "threads"],
    ["sim", "run", str(CRASH_SCENARIO), "--seed", "-1"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--concurrency", "0"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--lease-ttl-s", "0"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--poll-s", "-1"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--grace-s", "-1"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--park-timers-after-s", "-1"],
    ["worker", "--store", "x.db", "--workflow", "m:f", "--queue", "emails=0"],
    ["workers", "list", "--store", "x.db", "--lease-ttl-s", "0"],
    ["serve", "AGENT.yaml", "--store", "x.db", "--keys", "k.yaml", "--port", "-1"],
    ["serve", "AGENT.yaml", "--store", "x.db", "--keys", "k.yaml", "--seed", "-1"],
], ids=" ".join)
def test_zero_and_negative_counts_are_refused(args: list[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A count of zero or less (seeds, workers, concurrency, a lease, a poll), a seed below 0
    or an unknown backend: exit 2 naming the option and the value found, before anything
    runs."""
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    option = next(a for a in reversed(args) if a.startswith("--"))
    given = args[args.index(option) + 1]
    assert option in result.stderr and given in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_fixed_choices_are_listed_in_help() -> None:
    """Options that take one of a fixed set list the set in --help."""
    from tether.evals.campaign import BACKENDS
    from tether.evals.cli import BACKEND_CHOICES
    from tether.evals.suites import SUITES
    from tether.events import RunStatus

    assert BACKEND_CHOICES == BACKENDS
    flat = _wide_help("eval", "run")
    assert "<process|ray>" in flat
    assert ", ".join(SUITES) in flat
    assert "<" + "|".join(status.value for status in RunStatus) + ">" in _wide_help("runs", "list")


def _wide_help(*command: str) -> str:
    """A command's --help laid out 400 columns wide (no choice list folded), lines joined."""
    shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"}).stdout
    return " ".join(shown.split())


# -- --json everywhere -----------------------------------------------------------------------------

def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    children = getattr(command, "commands", None)
    if children:
        for name, child in children.items():
            yield from _leaves(child, (*path, name))
    else:
        yield " ".join(path), command


def _everyone(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command of the tree, groups included (the root is "")."""
    yield " ".join(path), command
    for name, child in (getattr(command, "commands", None) or {}).items():
        yield from _everyone(child, (*path, name))


def _takes_json(root: Any, args: list[str]) -> bool:
    command = root
    for word in args:
        children = getattr(command, "commands", None)
        if not children:
            break
        if word not in children:
            if command.name == "serve":  # `tether serve AGENT…` is `tether serve run AGENT…`
                command = children["run"]
            break
        command = children[word]
    return not getattr(command, "commands", None) and any(
        "--json" in p.opts for p in command.params)


def test_every_command_that_prints_results_has_json() -> None:
    """Walk the command tree: each command has --json, but for the allow-listed ones (which
    are long-running servers)."""
    leaves = dict(_leaves(typer.main.get_command(app)))
    assert {"demo", "eval run", "store check", "approve", "deny", "sim run"} <= set(leaves)
    without = sorted(name for name, command in leaves.items()
                     if not any("--json" in p.opts for p in command.params))
    assert without == sorted(set(NO_JSON) & set(leaves)), without


def _parses(result: Any, *, codes: tuple[int, ...] = (0,)) -> Any:
    assert result.exit_code in codes, result.output
    return json.loads(result.stdout)


def test_json_output_parses_everywhere(tmp_path: Path, store: Path, held: Path) -> None:
    """Each command's --json output is one JSON document on stdout, with nothing else there
    (progress, banners and tables stay off stdout)."""
    s = str(store)
    assert _parses(invoke("version", "--json"))["version"]
    assert [r["run_id"] for r in _parses(invoke("runs", "list", "--store", s, "--json"))] == \
        [LONG_RUN_ID]
    assert _parses(invoke("runs", "show", LONG_RUN_ID, "--store", s, "--json"))
    assert _parses(invoke("trace", LONG_RUN_ID, "--store", s, "--json"))
    assert _parses(invoke("store", "check", "--store", s, "--json")) == \
        {"store": s, "ok": True, "problems": []}
    started = _parses(invoke("runs", "start", "tests.test_cli_conventions:two_steps",
                             "--store", s, "--json"))
    assert set(started) == {"run_id", "queue"}
    assert _parses(invoke("workers", "list", "--store", s, "--json")) == []
    (pending,) = _parses(invoke("approvals", "list", "--store", str(held), "--json"))
    approved = _parses(invoke("approve", HELD_RUN, "--store", str(held), "--by", "grace",
                              "--role", "supervisor", "--json"))
    assert (approved["decision"], approved["tool"], approved["step"]) == \
        ("approved", pending["tool"], pending["step"])
    late = invoke("deny", HELD_RUN, "--store", str(held), "--by", "bob", "--json")
    assert (late.exit_code, late.stdout) == (2, "")
    assert "already approved by grace" in json.loads(late.stderr)["error"]["message"]
    assert _parses(invoke("agent", "check", str(AGENT_FILE), "--json"))["ok"] is True
    assert _parses(invoke("agent", "show", str(AGENT_FILE), "--json"))["tools"]
    keys = tmp_path / "keys.yaml"
    added = _parses(invoke("serve", "keys", "add", "--tenant", "t", "--principal", "p",
                           "--keys", str(keys), "--json"))
    assert added["key"].startswith("tk_") and added["key"] not in keys.read_text()
    episode = _parses(invoke("sim", "run", str(CRASH_SCENARIO), "--harness", "naive",
                             "--json"), codes=(1,))
    assert episode["ok"] is False
    replayed = _parses(invoke("sim", "replay", str(CRASH_SCENARIO), "--harness", "naive",
                              "--json"), codes=(1,))
    assert replayed["identical"] is True
    out = tmp_path / "eval"
    gate = _parses(invoke("eval", "run", "--seeds", "1", "--suite", "retry_safety",
                          "--workers", "1", "--out", str(out), "--json"))
    assert gate["passed"] is True and gate["files"]["results"] == str(out / "results.json")
    compared = _parses(invoke("sim", "compare", str(out / "results.json"),
                              str(out / "results.json"), "--json"))
    assert compared["regression"] is False


def test_demo_and_crash_demo_json_on_stdout_alone(tmp_path: Path) -> None:
    """The real processes: `demo --json` (its progress on stderr) and `crash-demo --json`
    print one JSON document on stdout and nothing else."""
    demo = piped("demo", "--seeds", "1", "--workers", "2", "--out", str(tmp_path / "demo"),
                 "--json")
    assert demo.returncode == 0, demo.stderr[-2000:]
    data = json.loads(demo.stdout)
    assert data["files"]["report"] == str(tmp_path / "demo" / "report.html")
    assert data["results"]["cells"]
    crash = piped("crash-demo", "--folder", str(tmp_path / "crash"), "--json")
    assert crash.returncode == 0, crash.stderr[-2000:]
    outcomes = {o["harness"]: o["counts"]["refunds"] for o in json.loads(crash.stdout)["outcomes"]}
    assert outcomes == {"naive": 2, "tether": 1}


def test_brackets_in_help_are_printed_not_read_as_markup() -> None:
    """Every [bracketed] word of a command's help (e.g. pip install 'tether[ray]') is shown
    in its --help: none is eaten as rich markup."""
    checked = 0
    for name, command in _everyone(typer.main.get_command(app)):
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        wanted = [m.replace("\\[", "[") for text in texts
                  for m in re.findall(r"\\?\[[^\]\n]*\]", text)]
        if not wanted:
            continue
        shown = _wide_help(*name.split())
        for text in wanted:
            assert text in shown, (name, text)
            checked += 1
    assert checked >= 1


def test_sim_serve_json_is_json_lines() -> None:
    """`sim serve --json` (a long-running server): its addresses as one JSON line once it
    listens, its verdict as one JSON line when stopped; its banner stays on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "sim", "serve",
                             str(CRASH_SCENARIO), "--port", "0", "--json"], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["addresses"]["verdict"].startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 3, err  # no request reached the world: inconclusive
    (verdict,) = [json.loads(line) for line in rest.splitlines()]
    assert verdict["inconclusive"], verdict
    assert "serving" in err


# -- tether.terminal itself --------------------------------------------------------------------

def test_the_factory_follows_where_output_goes(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Not a terminal: PIPE_WIDTH and soft wrap (a 300-character line stays one line);
    NO_COLOR: no colour system at all."""
    from tether.terminal import PIPE_WIDTH, stderr, stdout

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    out = stdout()
    assert (out.is_terminal, out.width, out.soft_wrap) == (False, PIPE_WIDTH, True)
    out.print("word " * 60)
    assert capsys.readouterr().out == "word " * 60 + "\n"
    monkeypatch.setenv("NO_COLOR", "1")
    assert stdout().color_system is None and stderr().color_system is None


def test_fail_prints_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """fail(): the message as written on stderr, exit code carried; JSON when asked."""
    from tether.errors import UsageError
    from tether.terminal import fail

    stop = fail("pip install 'tether[postgres]' [bold]now[/bold]", code=2)
    assert stop.exit_code == 2
    seen = capsys.readouterr()
    assert (seen.out, seen.err) == ("", "error: pip install 'tether[postgres]' "
                                        "[bold]now[/bold]\n")
    fail(UsageError("no [x]"), as_json=True, file="a.yaml")
    seen = capsys.readouterr()
    assert seen.out == ""
    assert json.loads(seen.err) == {"error": {"type": "UsageError", "message": "no [x]",
                                              "exit_code": 2, "file": "a.yaml"}}
