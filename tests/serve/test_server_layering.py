"""tether.serve sits at the top: nothing below imports it, and web frameworks stay in it."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tether.errors import UsageError
from tether.serve import requires_serve

SRC = Path(__file__).resolve().parents[2] / "src" / "tether"
#: Layers below the server face: none may import tether.serve or tether.client.
BELOW = ("store", "clock", "errors", "events", "runtime", "policy", "models", "agent", "memory",
         "retries", "specs", "yamlsafe", "sessions", "sim", "evals", "tracing")
#: Where a web framework may be imported: the faces that serve HTTP.
WEB_FACES = ("serve", "client", "sim/wire", "view")
FRAMEWORKS = ("starlette", "fastapi", "uvicorn", "sse_starlette")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _files(part: str) -> list[Path]:
    single = SRC / f"{part}.py"
    return [single] if single.exists() else sorted((SRC / part).rglob("*.py"))


def test_nothing_below_the_server_imports_it() -> None:
    """No module of the layers below (sessions, sim, evals … store) imports tether.serve or
    tether.client."""
    offenders = [f"{p.relative_to(SRC)} imports {m}" for part in BELOW for p in _files(part)
                 for m in _imports(p) if m.startswith(("tether.serve", "tether.client"))]
    assert offenders == []


def test_web_frameworks_are_imported_only_by_the_http_faces() -> None:
    """Starlette, FastAPI and uvicorn are imported only in tether.serve, tether.client and
    the simulator's wire, so `import tether` works without the serve extra."""
    faces = [SRC / f for f in WEB_FACES]
    offenders = [f"{p.relative_to(SRC)} imports {m}" for p in SRC.rglob("*.py")
                 if not any(p.is_relative_to(face) for face in faces)
                 for m in _imports(p) if m.split(".")[0] in FRAMEWORKS]
    assert offenders == []


def test_a_missing_framework_is_a_usage_error_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Starlette installed, tether serve fails with a UsageError that says
    pip install 'tether[serve]'."""
    real = importlib.util.find_spec

    def without_starlette(name: str, *args: Any) -> Any:
        return None if name == "starlette" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_starlette)
    with pytest.raises(UsageError, match=r"pip install 'tether\[serve\]'"):
        requires_serve("uvicorn")
