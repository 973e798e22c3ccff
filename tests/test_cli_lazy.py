"""The ``tether`` command imports a command group only when it runs: ``--help`` lists every
group from stand-ins whose help lines are the groups' own, and one command loads its module,
not its siblings'.

Each check runs in a fresh interpreter and reads its ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The modules of the groups and commands cli.py registers by name (tether.evals.cli is left
# out: cli.py still imports it for the demo's bounds, MAX_SEEDS and MAX_WORKERS).
ELSEWHERE = ["tether.serve.cli", "tether.sessions.cli", "tether.sim.cli", "tether.view.cli",
             "tether.worker_cli"]


def run(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the last line it printed, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin",
                                            "TERM": "dumb"})
    assert done.returncode == 0, done.stderr[-3000:]
    result: list[str] = json.loads(done.stdout.splitlines()[-1])
    return result


def invoked_then_loaded(*args: str) -> list[str]:
    """The modules of :data:`ELSEWHERE` loaded after ``tether ARGS`` ran."""
    return run(
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from tether.cli import app\n"
        f"result = CliRunner().invoke(app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps(sorted(m for m in {ELSEWHERE!r} if m in sys.modules)))\n")


def test_help_imports_no_group() -> None:
    """``tether --help`` and ``tether runs --help`` list every group and import none."""
    assert invoked_then_loaded("--help") == []
    assert invoked_then_loaded("runs", "--help") == []


@pytest.mark.parametrize(("args", "module"), [
    (["worker", "--help"], "tether.worker_cli"),
    (["workers", "--help"], "tether.worker_cli"),
    (["runs", "start", "--help"], "tether.worker_cli"),
    (["sim", "--help"], "tether.sim.cli"),
    (["serve", "--help"], "tether.serve.cli"),
    (["agent", "--help"], "tether.sessions.cli"),
    (["view", "--help"], "tether.view.cli"),
])
def test_a_command_imports_its_own_module_only(args: list[str], module: str) -> None:
    """Running one group or command imports its module and none of its siblings'."""
    assert invoked_then_loaded(*args) == [module]


def test_stand_ins_read_as_the_real_commands() -> None:
    """The help listings drawn from stand-ins equal those drawn once every command is
    imported: each stand-in's help line is its command's own."""
    shown = run(
        "import json\n"
        "import typer\n"
        "from typer.testing import CliRunner\n"
        "from tether.cli import app\n"
        "def helps():\n"
        "    return [CliRunner().invoke(app, a).output for a in (['--help'], ['runs', '--help'])]\n"
        "before = helps()\n"
        "root = typer.main.get_command(app)\n"
        "assert 'run' in root.commands['sim'].commands, 'sim is still a stand-in'\n"
        "assert 'start' in root.commands['runs'].commands\n"
        "import tether.cli as cli\n"
        "# every group built from here on imports all its commands at once\n"
        "orig = cli._Deferring.__init__\n"
        "def eager(self, *a, **k):\n"
        "    orig(self, *a, **k)\n"
        "    dict(self.commands.items())\n"
        "cli._Deferring.__init__ = eager\n"
        "after = helps()\n"
        "print(json.dumps([before == after, before[0], after[0]]))\n")
    assert shown[0], f"stand-in listing:\n{shown[1]}\nreal listing:\n{shown[2]}"
