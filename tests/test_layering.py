"""Imports point down the layers of DESIGN.md, and no two parts of tether import each other.

A static check, like the determinism guard: every ``import`` in src/tether — at module level or
inside a function (a function-level import is still a dependency, only a later one), but not
under ``if TYPE_CHECKING:`` — is resolved to the module it names, each module to its *unit* (the
package or module of :data:`LAYERS` its name falls under, the most specific one), and

- no unit imports a unit of a higher row (an arrow pointing up);
- the other arrows between units make no cycle (a circle between units of one row);
- every module of src/tether belongs to some unit, so a new package has to be placed;
- inside a unit, modules that import each other round a circle are only the known ones of
  :data:`KNOWN_CIRCLES_WITHIN_UNITS` (a ratchet: none new, and a fixed one leaves the list).
"""

from __future__ import annotations

import ast
import itertools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tether"

# The layers of DESIGN.md ("Layers (dependencies point down only)"), bottom row first. Each row
# is (its name, after the DESIGN.md layer it belongs to; its units); a unit may import units of
# its own row or of lower rows. Rows refine DESIGN.md where it lists parts together or leaves
# them out:
# - ground: DESIGN's "store / clock / errors / events", with the small leaf modules they and
#   everyone else share (the version, the packages' lazy name loader, YAML loading, spec
#   helpers, module import by reference, the definition of a retry counted from events);
# - models and tracing sit below the runtime: the runtime is *given* a Model (DESIGN: "the
#   simulator plugs into the runtime only through ... a Model"), and a trace is read from a
#   journal, so neither may reach into the runtime;
# - DESIGN's runtime row lists "policy, approvals" with the runtime. Approvals are a durable
#   wait, so the wait and its requests live in the runtime (tether.runtime.approvals), and
#   tether.policy sits one row up, over it; memory (facts with provenance, read by the agent)
#   sits there too;
# - the reference agents are examples "loaded like a user's agent": nothing in sim or evals may
#   name them, so they sit above both;
# - faces are DESIGN's top row (cli, server, view, worker, pytest plugin, the ``tether sim`` /
#   ``tether eval`` / ``tether session`` command groups, which live beside what they drive but
#   are faces), plus the HTTP client of the server, the printing helpers only faces use, the
#   demo, test helpers, and the package root ``tether`` (its __init__ re-exports the public
#   surface, so nothing below may take a name from it).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("tether._version", "tether._lazy", "tether.errors", "tether.clock",
                "tether.events", "tether.store", "tether.yamlsafe", "tether.specs",
                "tether.imports", "tether.retries")),
    ("runtime: what it is given", ("tether.models", "tether.tracing")),
    ("runtime", ("tether.runtime",)),
    ("runtime: over its core", ("tether.policy", "tether.memory")),
    ("agent", ("tether.agent",)),
    ("sessions", ("tether.sessions",)),
    ("sim", ("tether.sim",)),
    ("evals", ("tether.evals",)),
    ("reference agents", ("tether.reference",)),
    ("faces", ("tether", "tether.cli", "tether.worker_cli", "tether.serve", "tether.view",
               "tether.client", "tether.terminal", "tether.demo", "tether.testing",
               "tether.sim.cli", "tether.evals.cli", "tether.sessions.cli",
               "tether.evals.pytest_plugin", "tether.cli_options")),
]

# Arrows that stay, each with its reason: (importing module, imported module) -> why.
ALLOWED: dict[tuple[str, str], str] = {}

# Circles between modules of one unit that remain (found when this test was written; each
# half joins through a function-level import). Not layer violations, but the same knot the
# runtime <-> policy.approvals circle was; listed so that no new one appears, to be removed
# with the fix named.
KNOWN_CIRCLES_WITHIN_UNITS: dict[frozenset[str], str] = {
}


@dataclass(frozen=True)
class Arrow:
    """One import: ``source`` (a module) names ``target`` (a module) at ``line``."""

    source: str
    target: str
    line: int


def modules_of(src: Path) -> dict[str, Path]:
    """Every module under the package directory ``src``, by dotted name."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (the if-branch only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else (
                test.attr if isinstance(test, ast.Attribute) else "")
            if name == "TYPE_CHECKING":
                for statement in node.body:
                    skip.update(id(n) for n in ast.walk(statement))
    return skip


def arrows(module: str, source: str, *, is_package: bool, known: Iterable[str]) -> list[Arrow]:
    """The imports of ``module`` (its ``source``) that name a module of ``known``.

    ``from pkg import name`` names ``pkg.name`` when that is a module, else ``pkg``."""
    known = set(known)
    tree = ast.parse(source, module)
    skip = _type_checking_only(tree)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.append(Arrow(module, target, node.lineno))
    return found


def unit_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> tuple[int, str] | None:
    """(row, unit) of ``module``: the most specific unit its name falls under. The package
    root is a unit of its own name only, not of everything below it."""
    best: tuple[int, str] | None = None
    for row, (_layer, units) in enumerate(layers):
        for unit in units:
            inside = module == unit or ("." in unit and module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best[1])):
                best = (row, unit)
    return best


def problems(src: Path, layers: list[tuple[str, tuple[str, ...]]],
             allowed: dict[tuple[str, str], str]) -> list[str]:
    """Upward arrows, circles between units, and modules no unit holds, in the tree ``src``."""
    modules = modules_of(src)
    found: list[str] = []
    units: dict[str, tuple[int, str]] = {}
    for module in modules:
        where = unit_of(module, layers)
        if where is None:
            found.append(f"{module}: in no layer; place it in LAYERS")
        else:
            units[module] = where
    graph: dict[str, dict[str, Arrow]] = {}
    for module, path in modules.items():
        for arrow in arrows(module, path.read_text(), is_package=path.name == "__init__.py",
                            known=modules):
            if (arrow.source, arrow.target) in allowed or arrow.target not in units or \
                    module not in units:
                continue
            (row, unit), (to_row, to_unit) = units[module], units[arrow.target]
            rel = path.relative_to(src.parent)
            if to_row > row:
                found.append(
                    f"{rel}:{arrow.line}: {module} ({layers[row][0]}) imports {arrow.target}, "
                    f"which sits higher ({layers[to_row][0]})")
            elif unit != to_unit:  # an upward arrow is reported once, not again as a circle
                graph.setdefault(unit, {}).setdefault(to_unit, arrow)
    found += [f"circle: {' -> '.join(c)}" for c in _circles(graph)]
    return found


def _groups(graph: dict[str, dict[str, Arrow]]) -> list[list[str]]:
    """The strongly connected groups of more than one node: each lies on a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; graphs here have a few hundred nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _circles(graph: dict[str, dict[str, Arrow]]) -> list[list[str]]:
    """One cycle through each strongly connected group of units, each named by the arrows
    (module:line) that make it."""
    cycles = []
    for group in _groups(graph):
        members = set(group)
        path, node = [group[0]], group[0]
        while True:  # walk inside the group until a unit repeats
            node = next(n for n in sorted(graph[node]) if n in members)
            if node in path:
                path = [*path[path.index(node):], node]
                break
            path.append(node)
        cycles.append([*(f"{a} ({graph[a][b].source}:{graph[a][b].line})"
                         for a, b in itertools.pairwise(path)), path[-1]])
    return cycles


def circles_within_units(src: Path, layers: list[tuple[str, tuple[str, ...]]]
                         ) -> set[frozenset[str]]:
    """The groups of modules of one unit that import each other round a circle (the halves
    usually joined by a function-level import made to dodge the circle)."""
    modules = modules_of(src)
    graph: dict[str, dict[str, Arrow]] = {}
    for module, path in modules.items():
        for arrow in arrows(module, path.read_text(), is_package=path.name == "__init__.py",
                            known=modules):
            if unit_of(module, layers) == unit_of(arrow.target, layers):
                graph.setdefault(module, {}).setdefault(arrow.target, arrow)
    return {frozenset(group) for group in _groups(graph)}


def test_imports_point_down_the_layers() -> None:
    """No module of src/tether imports from a higher layer, and no two units import each
    other; the allowed exceptions are listed with their reasons."""
    assert problems(SRC, LAYERS, ALLOWED) == []


def test_no_new_circle_inside_a_unit() -> None:
    """Modules of one package that import each other: the known ones are listed (to be
    removed, each with the fix it needs) and no new one may appear; one removed from the code
    is removed from the list."""
    assert circles_within_units(SRC, LAYERS) == set(KNOWN_CIRCLES_WITHIN_UNITS)


def test_every_allowed_arrow_still_exists() -> None:
    """An exception that is no longer needed is removed from the list, not kept 'just in
    case'."""
    modules = modules_of(SRC)
    present = {(a.source, a.target) for module, path in modules.items()
               for a in arrows(module, path.read_text(), is_package=path.name == "__init__.py",
                               known=modules)}
    assert [pair for pair in ALLOWED if pair not in present] == []


def test_every_unit_of_the_layers_exists() -> None:
    """A unit renamed or removed is taken out of LAYERS too (a stale name checks nothing)."""
    modules = modules_of(SRC)
    missing = [unit for _layer, units in LAYERS for unit in units if unit not in modules]
    assert missing == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "pkg"


TOY_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("pkg.base",)),
    ("middle", ("pkg.core", "pkg.extra")),
    ("faces", ("pkg", "pkg.cli", "pkg.core.cli")),
]
TOY = {
    "__init__.py": "from pkg.core import engine\n",
    "base.py": "import os\n",
    "core/__init__.py": "",
    "core/engine.py": "from pkg.base import os\nfrom . import helpers\n",
    "core/helpers.py": "import pkg.base\n",
    "core/cli.py": "from pkg.extra import tools\n",
    "extra/__init__.py": "",
    "extra/tools.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from pkg.cli import main\n",
    "cli.py": "from pkg.core.engine import *\n",
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    """The toy tree imports only downwards and within units (TYPE_CHECKING imports do not
    count), and a face living inside a lower package may import a sibling of that package."""
    assert problems(_tree(tmp_path, TOY), TOY_LAYERS, {}) == []


@pytest.mark.parametrize(("file", "text", "expected"), [
    ("base.py", "import os\nfrom pkg.core import engine\n",
     "pkg/base.py:2: pkg.base (ground) imports pkg.core.engine, which sits higher (middle)"),
    ("base.py", "def late():\n    import pkg.cli\n",
     "pkg/base.py:2: pkg.base (ground) imports pkg.cli, which sits higher (faces)"),
    ("core/helpers.py", "from .. import cli\n",
     "pkg/core/helpers.py:1: pkg.core.helpers (middle) imports pkg.cli, which sits higher "
     "(faces)"),
    ("core/helpers.py", "from pkg import engine_version\n",
     "pkg/core/helpers.py:1: pkg.core.helpers (middle) imports pkg, which sits higher (faces)"),
    ("core/helpers.py", "from pkg.core.cli import x\n",
     "pkg/core/helpers.py:1: pkg.core.helpers (middle) imports pkg.core.cli, which sits higher "
     "(faces)"),
])
def test_an_injected_upward_import_fails(tmp_path: Path, file: str, text: str,
                                         expected: str) -> None:
    """Module-level, function-level, relative, from-the-package-root and into-a-face imports
    that point up are each reported, naming the file, line and both layers."""
    src = _tree(tmp_path, {**TOY, file: text})
    assert problems(src, TOY_LAYERS, {}) == [expected]
    # an allow-list entry for exactly that arrow lets it through
    arrow = expected.split(": ")[1].split(" imports ")
    allowed = {(arrow[0].split(" ")[0], arrow[1].split(",")[0]): "test"}
    assert problems(src, TOY_LAYERS, allowed) == []


def test_a_circle_within_one_row_fails(tmp_path: Path) -> None:
    """Two units of the same row may import one another only one way round."""
    src = _tree(tmp_path, {**TOY, "extra/tools.py": "from pkg.core import engine\n",
                           "core/engine.py": "def f():\n    from pkg.extra import tools\n"})
    assert problems(src, TOY_LAYERS, {}) == [
        "circle: pkg.core (pkg.core.engine:2) -> pkg.extra (pkg.extra.tools:1) -> pkg.core"]


def test_a_circle_inside_a_unit_is_found(tmp_path: Path) -> None:
    """Two modules of one package importing each other (one of them late) make a circle."""
    assert circles_within_units(_tree(tmp_path, TOY), TOY_LAYERS) == set()
    src = _tree(tmp_path, {**TOY, "core/helpers.py": "def f():\n    from pkg.core import engine\n"})
    assert circles_within_units(src, TOY_LAYERS) == {
        frozenset({"pkg.core.engine", "pkg.core.helpers"})}


def test_a_module_in_no_layer_fails(tmp_path: Path) -> None:
    src = _tree(tmp_path, {**TOY, "stray.py": ""})
    assert problems(src, TOY_LAYERS, {}) == ["pkg.stray: in no layer; place it in LAYERS"]


def test_the_ground_floor_version_is_the_projects() -> None:
    """tether._version (what modules below the package root read) says what pyproject says."""
    from tether._version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
