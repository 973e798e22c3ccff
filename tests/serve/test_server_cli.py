"""`tether serve` refuses to start on bad input with exit 2 and a message naming the fix."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tether.cli import app
from tether.serve.tenants import KeyRing

from .serve_helpers import EXAMPLE


def _serve(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["serve", *args])
    return result.exit_code, result.output


def test_a_keys_file_without_keys_is_refused_with_the_command_that_adds_one(
        tmp_path: Path) -> None:
    """No key, no server: exit 2 naming `tether serve keys add`, and nothing listens."""
    code, output = _serve(str(EXAMPLE / "agent.yaml"), "--store", str(tmp_path / "r.db"),
                          "--keys", str(tmp_path / "keys.yaml"), "--port", "0")
    assert code == 2 and "tether serve keys add" in output


def test_a_bad_agent_file_is_refused_naming_it(tmp_path: Path) -> None:
    """An agent file that is missing or invalid is exit 2 with its path, before serving."""
    keys = tmp_path / "keys.yaml"
    ring = KeyRing()
    ring.add("tk_a-key-of-twenty-chars-or-more", tenant="t", principal="p")
    ring.save(keys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {provider: nowhere}\n")
    for agent in (tmp_path / "missing.yaml", bad):
        code, output = _serve(str(agent), "--store", str(tmp_path / "r.db"), "--keys",
                              str(keys), "--port", "0")
        assert code == 2 and agent.name in output, output
