"""One name, one meaning: no two modules of src/tether define a public class of the same name.

A static check, like tests/test_layering.py. A module's public *type names* are its top-level
classes (enums, dataclasses, pydantic models, errors alike), its type aliases
(``Action = Literal[...]``, ``Handler = Callable[...]``, ``type X = ...``) and what it imports
under another name (``from a import Rule as RetryRule`` names a second thing ``RetryRule``);
names with a leading underscore are private and may repeat. The same class imported under its
own name (a re-export) defines nothing new.

:data:`KNOWN_COLLISIONS` is a ratchet: the collisions left, each with the modules that define
the name and the rename it needs. No new one may appear, and one fixed leaves the list.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tether"

# name -> (the modules that define it, why it is left and the fix). Empty: issue 16 cleared the
# last twelve; a collision added here needs its reason and its fix, and leaves once fixed.
KNOWN_COLLISIONS: dict[str, tuple[frozenset[str], str]] = {}


def module_name(path: Path, src: Path) -> str:
    """The dotted name of the module at ``path`` in the package directory ``src``."""
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_alias(node: ast.stmt) -> str | None:
    """The name a top-level statement gives a type alias, if it is one: ``X = A[...]`` or
    ``X = A | B`` with a capitalised ``X`` (not a CONSTANT), ``X: TypeAlias = ...``, or
    ``type X = ...``."""
    type_alias = getattr(ast, "TypeAlias", None)  # the ``type`` statement (Python 3.12+)
    if type_alias is not None and isinstance(node, type_alias):
        return str(node.name.id)
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        annotation = node.annotation
        named = annotation.id if isinstance(annotation, ast.Name) else (
            annotation.attr if isinstance(annotation, ast.Attribute) else "")
        return node.target.id if named == "TypeAlias" else None
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
            isinstance(node.targets[0], ast.Name):
        name = node.targets[0].id
        if name[:1].isupper() and not name.isupper() and \
                isinstance(node.value, ast.Subscript | ast.BinOp):
            return name
    return None


def type_names(source: str) -> set[str]:
    """The public type names a module's ``source`` defines (see the module docstring)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(a.asname for a in node.names
                         if a.asname and a.asname != a.name.rpartition(".")[2]
                         and a.asname[:1].isupper())
        elif (alias := _is_type_alias(node)) is not None:
            names.add(alias)
    return {name for name in names if not name.startswith("_")}


def collisions(src: Path) -> dict[str, frozenset[str]]:
    """Each public type name defined by more than one module of ``src``, with those modules."""
    defined: dict[str, set[str]] = defaultdict(set)
    for path in sorted(src.rglob("*.py")):
        for name in type_names(path.read_text()):
            defined[name].add(module_name(path, src))
    return {name: frozenset(modules) for name, modules in sorted(defined.items())
            if len(modules) > 1}


def test_no_two_modules_define_one_public_name() -> None:
    """Every public class, type alias and renamed import of src/tether has a name no other
    module uses, but for the known collisions; a fixed one leaves the list."""
    known = {name: modules for name, (modules, _why) in KNOWN_COLLISIONS.items()}
    assert collisions(SRC) == known


def test_the_public_surface_has_one_meaning_per_name() -> None:
    """The names this rule was written for mean one thing: tether.Rule is the retry rule,
    tether.Effect the tool's effect, tether.Verdict the policy's verdict, tether.Action the
    retry action; the others are named for what they are."""
    import tether
    from tether.events import Decision
    from tether.policy import PolicyDecision, PolicyRule
    from tether.sim.invariants import InvariantVerdict
    from tether.sim.world import WorldEffect

    assert tether.Rule.__module__ == "tether.runtime.retry"
    assert tether.Action.__module__ == "tether.runtime.retry"
    assert tether.Effect.__module__ == "tether.runtime.tools"
    assert tether.Verdict.__module__ == "tether.policy.request"
    assert {Decision.__name__, PolicyDecision.__name__, PolicyRule.__name__,
            InvariantVerdict.__name__, WorldEffect.__name__} == {
        "Decision", "PolicyDecision", "PolicyRule", "InvariantVerdict", "WorldEffect"}


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "pkg"


def test_a_collision_is_found(tmp_path: Path) -> None:
    """Two classes of one name in two modules collide; private names, constants, functions
    and plain re-exports do not."""
    src = _tree(tmp_path, {
        "__init__.py": "from pkg.a import Rule\n",
        "a.py": "class Rule: ...\nclass _Spec: ...\nLIMIT = 3\ndef helper(): ...\n",
        "b.py": "class _Spec: ...\nLIMIT = 4\ndef helper(): ...\n",
    })
    assert collisions(src) == {}
    (src / "b.py").write_text("from enum import Enum\nclass Rule(Enum):\n    X = 1\n")
    assert collisions(src) == {"Rule": frozenset({"pkg.a", "pkg.b"})}


def test_aliases_and_renamed_imports_collide_too(tmp_path: Path) -> None:
    """A type alias and a class, or an import under another name and a class, collide."""
    src = _tree(tmp_path, {
        "a.py": "class Action: ...\nclass Verdict: ...\n",
        "b.py": "from typing import Literal\nAction = Literal['deny', 'allow']\n",
        "c.py": "from pkg.a import Action as Verdict\n",
        "d.py": "from typing import TypeAlias\nHandler: TypeAlias = int\nclass Handler2: ...\n",
        "e.py": "Handler = int | str\n",
    })
    assert collisions(src) == {"Action": frozenset({"pkg.a", "pkg.b"}),
                               "Handler": frozenset({"pkg.d", "pkg.e"}),
                               "Verdict": frozenset({"pkg.a", "pkg.c"})}
