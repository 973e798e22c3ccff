"""tether.client sits at the top with the server: it needs httpx and pydantic, never the web
framework, and nothing in tether imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tether"
#: What the client may import of tether: its own modules, errors, the clock, the SSE reader.
ALLOWED = ("tether.client", "tether.errors", "tether.clock", "tether.serve.sse")
FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "sse_starlette")


def imported(path: Path) -> set[str]:
    """Every module a file imports (at any depth in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_client_imports_only_what_it_may() -> None:
    """Client modules import no web framework and of tether only the allowed modules."""
    offenders = [f"{p.name} imports {m}" for p in sorted((SRC / "client").rglob("*.py"))
                 for m in imported(p)
                 if m.split(".")[0] in FRAMEWORKS
                 or (m.startswith("tether") and not m.startswith(ALLOWED))]
    assert offenders == []


def test_nothing_else_in_tether_imports_the_client() -> None:
    """No module outside tether.client imports it (it is a face, at the top)."""
    offenders = [f"{p.relative_to(SRC)} imports {m}" for p in sorted(SRC.rglob("*.py"))
                 if "client" not in p.relative_to(SRC).parts[:1]
                 for m in imported(p) if m.startswith("tether.client")]
    assert offenders == []


def test_importing_the_client_loads_no_framework() -> None:
    """In a fresh interpreter, importing tether.client leaves Starlette and uvicorn unloaded."""
    code = ("import sys, tether.client; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_without_httpx_the_import_names_the_extra() -> None:
    """With httpx missing, importing tether.client is a UsageError naming the install line."""
    code = ("import sys; sys.modules['httpx'] = None\n"
            "try:\n    import tether.client\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("UsageError") and "pip install 'tether[serve]'" in out
