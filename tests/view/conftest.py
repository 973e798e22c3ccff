"""Fixtures of the viewer's tests: a SQLite store of real runs, a real campaign folder, and a real
``tether view`` process serving them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .runs import make_runs

#: ``tether view`` as a process, through the command function itself (the root CLI registers
#: it as ``tether view``; this does not depend on that registration).
VIEW = [sys.executable, "-c", "import typer; from tether.view.cli import view; typer.run(view)"]
TETHER = [sys.executable, "-m", "tether.cli"]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A new SQLite store holding the three runs of :mod:`tests.view.runs`."""
    path = tmp_path / "runs.db"
    make_runs(path)
    return path


@pytest.fixture(scope="session")
def campaign_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A campaign folder written by a real ``tether demo --out`` (one seed)."""
    out = tmp_path_factory.mktemp("campaign") / "demo"
    done = subprocess.run([*TETHER, "demo", "--out", str(out), "--seeds", "1"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode in (0, 1), done.stderr  # 1: the demo's naive harness fails gates
    assert (out / "results.json").is_file() and (out / "report.html").is_file(), done.stderr
    return out


@contextmanager
def viewing(*args: str, env: dict[str, str] | None = None) -> Iterator[
        tuple[str, subprocess.Popen[str]]]:
    """``tether view ARGS --port 0`` running; yields its URL (read from its first line)."""
    proc = subprocess.Popen([*VIEW, *args, "--port", "0", "--poll", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("viewing http://127.0.0.1:"), (
            line, proc.stderr.read() if proc.poll() is not None else "")
        yield line.split()[1].rstrip("/"), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
