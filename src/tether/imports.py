"""Resolving what a file or a flag names by import path: ``package.module:attr`` or
``path/to/file.py:attr``.

Agent files (their tools and scripts), scenarios (their agent, model and user scripts) and the
command line all name Python objects the same two ways, and all resolve them here:

* ``package.module:attr`` is imported as usual; the folder of the file that named it
  (``base_dir``) and the current directory are on the path, behind everything else, as for a
  script beside that package or ``python -m`` run from the project;
* ``path/to/file.py:attr`` (anything ending in ``.py`` or holding a path separator) is a file,
  relative to ``base_dir`` (the current directory when there is none), loaded once under a
  module name derived from its absolute path (:data:`FILE_MODULE_PREFIX`), with its own folder
  on the path so its siblings import as they would when it runs as a script.

Every failure is a :class:`~tether.errors.UsageError` that starts with ``what`` (the file and
key, or the flag, that named the object, and the spec), then says what was expected, what was
found and how to fix it; a module that fails at import is not left half-imported.

>>> import_object("json:dumps", None, what="settings.encoder 'json:dumps'")({"a": 1})
'{"a": 1}'
>>> import_object("json:nope", None, what="settings.encoder 'json:nope'")
Traceback (most recent call last):
...
tether.errors.UsageError: settings.encoder 'json:nope': json has no 'nope'; name one of \
its attributes after the colon
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tether.errors import UsageError

__all__ = ["FILE_MODULE_PREFIX", "import_module", "import_object", "is_file", "resolve_file",
           "split_spec"]

#: Module names of files loaded by path start with this (followed by a digest of the path), so
#: one file named from two places is imported once.
FILE_MODULE_PREFIX = "tether_agent_file_"


def split_spec(spec: Any, *, what: str, noun: str = "attr", hint: str = "") -> tuple[str, str]:
    """``spec`` as ``(module or file, attribute)``; a :class:`UsageError` starting with
    ``what`` when it is not ``<module or file>:<identifier>``. ``noun`` names what the
    attribute is (``function``, ``attr``) and ``hint`` says what it must be."""
    text = spec.strip() if isinstance(spec, str) else ""
    where, sep, attribute = text.rpartition(":")
    if not sep or not where or not attribute.isidentifier():
        from tether.specs import short_repr  # specs loads YAML: ~20 ms a worker need not pay

        shown = f" ({hint})" if hint else ""
        raise UsageError(f"{what}: expected package.module:{noun} or path/to/file.py:{noun}"
                         f"{shown}, found {short_repr(spec)}")
    return where, attribute


def is_file(where: str) -> bool:
    """Whether the module part of a spec names a file rather than a module."""
    return where.endswith(".py") or "/" in where or "\\" in where


def resolve_file(where: str, base_dir: Path | None) -> Path:
    """The absolute path of a file named relative to ``base_dir`` (or the current directory)."""
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path.resolve()


def import_object(spec: str, base_dir: Path | None, *, what: str, noun: str = "attr",
                  hint: str = "") -> Any:
    """The object ``spec`` names (see the module docstring); every error starts with
    ``what``, which names where the spec was written and the spec itself."""
    where, attribute = split_spec(spec, what=what, noun=noun, hint=hint)
    module = import_module(where, base_dir, what=what)
    try:
        return getattr(module, attribute)
    except AttributeError:
        kind = "" if noun == "attr" else f" (it defines no {noun} {attribute!r})"
        raise UsageError(f"{what}: {where} has no {attribute!r}{kind}; name one of its "
                         "attributes after the colon") from None


def import_module(where: str, base_dir: Path | None, *, what: str) -> ModuleType:
    """The module ``where`` names: a file (relative to ``base_dir``) or a module path."""
    if is_file(where):
        return _load_file(resolve_file(where, base_dir), what)
    for folder in (base_dir, Path.cwd()):
        # Behind everything else, so a folder never shadows an installed package; the current
        # directory not at all when the interpreter already has it (as "").
        entry = None if folder is None else str(folder)
        if entry is not None and entry not in sys.path and \
                not (folder == Path.cwd() and "" in sys.path):
            sys.path.append(entry)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        missing = exc.name or where
        if not (where == missing or where.startswith(f"{missing}.")):
            # The module exists but imports one that does not: its own failure to fix.
            sys.modules.pop(where, None)
            raise UsageError(f"{what}: importing {where} failed: ModuleNotFoundError: {exc} "
                             "(install what it imports)") from None
        places = ", ".join(str(p) for p in dict.fromkeys((base_dir, Path.cwd())) if p)
        raise UsageError(f"{what}: no module {missing!r} (is the package installed, or in one "
                         f"of {places}?)") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(where, None)
        raise UsageError(f"{what}: importing {where} failed: {type(exc).__name__}: {exc}") \
            from None


def _load_file(path: Path, what: str) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"{what}: no file {path} (a relative path is read from the folder of "
                         "the file that names it, or the current directory)")
    name = FILE_MODULE_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    known = sys.modules.get(name)
    if known is not None:
        return known
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{what}: {path} is not a Python file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        # A script that exits at import (its argparse, say) cannot be imported: said as such,
        # and not left half-imported.
        del sys.modules[name]
        raise UsageError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}") \
            from None
    return module
