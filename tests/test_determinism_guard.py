"""The core takes time, sleep, randomness and ids only from the injected clock and RNG."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tether"

# (module, attribute) pairs whose direct use makes a run depend on the wall clock or global
# randomness. `random.Random(seed)` is allowed: an explicitly seeded generator.
FORBIDDEN = {
    ("time", "time"), ("time", "time_ns"), ("time", "sleep"), ("time", "monotonic"),
    ("time", "monotonic_ns"), ("time", "perf_counter"), ("time", "perf_counter_ns"),
    ("asyncio", "sleep"), ("uuid", "uuid1"), ("uuid", "uuid4"), ("os", "urandom"),
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("secrets", "token_hex"), ("secrets", "token_bytes"), ("secrets", "randbits"),
}
RANDOM_MODULE_ALLOWED = {"Random"}
# Modules that are allowed to touch the real world: the clock itself, and the command line /
# demo / test helpers, which are faces and tools rather than the core.
EXEMPT = {"clock.py", "cli.py"}
EXEMPT_DIRS = {"demo", "testing"}


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Direct wall-clock or global-random calls in ``source``."""
    found = []
    tree = ast.parse(source, filename)
    imported_from: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported_from[alias.asname or alias.name] = (node.module, alias.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        pair: tuple[str, str] | None = None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            pair = (func.value.id, func.attr)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute):
            pair = (func.value.attr, func.attr)
        elif isinstance(func, ast.Name) and func.id in imported_from:
            module, name = imported_from[func.id]
            pair = (module.rpartition(".")[2], name)
        if pair is None:
            continue
        if pair in FORBIDDEN or (pair[0] == "random" and pair[1] not in RANDOM_MODULE_ALLOWED):
            found.append(f"{filename}:{node.lineno}: {pair[0]}.{pair[1]}()")
    return found


def test_core_never_reads_the_wall_clock_or_global_random() -> None:
    """No module of src/tether outside clock.py calls time/sleep/random/uuid directly."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name in EXEMPT or (rel.parts and rel.parts[0] in EXEMPT_DIRS):
            continue
        problems += violations(path.read_text(), str(rel))
    assert problems == []


def test_guard_catches_each_form() -> None:
    """The checker flags module calls, from-imports and global random, and allows Random(seed)."""
    source = """
import time, random, asyncio, uuid
from datetime import datetime
from time import perf_counter as pc
async def f():
    time.time(); random.random(); random.choice([1]); await asyncio.sleep(1); uuid.uuid4()
    datetime.now(); pc()
    rng = random.Random(4); rng.random()
"""
    found = violations(source)
    assert sorted(f.split(": ")[1] for f in found) == sorted([
        "time.time()", "random.random()", "random.choice()", "asyncio.sleep()", "uuid.uuid4()",
        "datetime.now()", "time.perf_counter()",
    ])
