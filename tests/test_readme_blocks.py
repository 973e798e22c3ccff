"""The README's Python blocks that are followed by their output run as written, from the
repository's root, and print exactly that output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
#: ``<!-- runs in: examples/x -->`` right before a block: the folder it runs from.
_RUNS_IN = re.compile(r"<!-- runs in: (\S+) -->\s*$")


def _with_output() -> list[tuple[int, str, str, str]]:
    text = (ROOT / "README.md").read_text()
    blocks = list(_BLOCK.finditer(text))
    found = []
    for before, block, following in zip([None, *blocks], blocks, blocks[1:], strict=False):
        if block.group(1) == "python" and following.group(1) == "" and \
                not text[block.end():following.start()].strip():
            line = text[:block.start()].count("\n") + 1
            lead = text[before.end() if before else 0:block.start()]
            where = _RUNS_IN.search(lead)
            found.append((line, where.group(1) if where else ".", block.group(2),
                          following.group(2)))
    return found


BLOCKS = _with_output()


def test_the_readme_has_blocks_with_output() -> None:
    """The README shows at least the in-process wire example with its output."""
    assert any("stripe_http_client" in code for _, _, code, _ in BLOCKS)


@pytest.mark.parametrize(("line", "where", "code", "printed"), BLOCKS,
                         ids=[f"README.md:{line}" for line, *_ in BLOCKS])
def test_a_readme_block_prints_what_the_readme_shows(line: int, where: str, code: str,
                                                     printed: str) -> None:
    """The block runs in a fresh interpreter, from the folder the README names (else the
    repository's root), and prints the README's output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / where), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT / where, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == printed, f"README.md:{line}"
