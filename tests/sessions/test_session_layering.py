"""The sessions layer sits above the agent and below the simulator: no import crosses it upward."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tether"
#: What lies below sessions: it may import these, and none of them may import sessions.
BELOW = ("store", "clock", "errors", "events", "runtime", "policy", "models", "agent", "memory",
         "retries", "specs", "yamlsafe")
#: What lies above sessions: sessions may not import it.
ABOVE = ("sim", "evals", "cli", "demo", "tracing")


def imported(path: Path) -> set[str]:
    """Every tether module a file imports (at any depth in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("tether.")}


def files_of(part: str) -> list[Path]:
    single = SRC / f"{part}.py"
    return [single] if single.exists() else sorted((SRC / part).rglob("*.py"))


def test_nothing_below_sessions_imports_it() -> None:
    """store … agent and memory never import tether.sessions."""
    offenders = [f"{p.relative_to(SRC)} imports {m}" for part in BELOW for p in files_of(part)
                 for m in imported(p) if m.startswith("tether.sessions")]
    assert offenders == []


def test_sessions_imports_nothing_above_it() -> None:
    """tether.sessions' own modules never import the simulator, evals or the CLI."""
    own = [SRC / "sessions" / n for n in ("__init__.py", "session.py", "state.py",
                                          "history.py", "restore.py")]
    offenders = [f"{p.name} imports {m}" for p in own for m in imported(p)
                 if m.split(".")[1] in ABOVE]
    assert offenders == []
