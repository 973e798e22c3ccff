"""Public names imported on first use (:pep:`562`), for every package of tether.

A package lists which module defines each of its public names and hands the table here::

    _WHERE = {"Agent": "tether.agent.agent", "run_campaign": "tether.evals.run:run_full_campaign"}
    if not TYPE_CHECKING:
        __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)

A value ``"module:attribute"`` exports a name the module spells otherwise. ``import package``
then costs the package's ``__init__`` alone; ``package.Name`` imports the defining module once
and keeps the value in the package (later lookups do not come back here), and
``package.submodule`` imports a submodule as eager imports used to allow.

This module sits on the ground floor (it imports only the standard library's ``sys`` and
``types``) so that any package, however low, may use it; it must stay that small, because every
``import tether`` loads it.
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


class _Package(types.ModuleType):
    """A lazy package, keeping each exported name on what it exports: the import system sets a
    submodule as an attribute of its package when it loads it, so a submodule that shares a
    public name (``tether.policy.control_flow`` the module, ``control_flow`` the rule) would
    otherwise replace the function with the module."""

    _exported: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._exported and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def attach(
    package: str, where: Mapping[str, str], public: Iterable[str],
    renamed: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, which loads ``where``'s names on
    first use; ``dir(package)`` lists what is loaded and every name of ``public``. ``renamed``
    maps former public names to current ones: a former name still resolves, to the current
    name's value, with a ``DeprecationWarning`` each time (it is not listed anywhere).

    >>> getattr_, dir_ = attach("tether", {"Runtime": "tether.runtime.runtime"}, ["Runtime"])
    """
    module = sys.modules[package]
    namespace = module.__dict__
    names = tuple(public)
    # one small class per package: the exported names are a class attribute, so __setattr__
    # finds them without a lookup in the module's own namespace (which __getattr__ would serve)
    module.__class__ = type("LazyPackage", (_Package,), {"_exported": frozenset(where)})

    def __getattr__(name: str) -> object:
        target = where.get(name)
        if target is not None:
            source, _, attribute = target.partition(":")
            # __import__, as the import statement does (importlib.import_module would hide
            # the module from ``python -X importtime``)
            __import__(source)
            value = getattr(sys.modules[source], attribute or name)
            namespace[name] = value  # later lookups skip this function
            return value
        if renamed is not None and name in renamed:
            import warnings

            warnings.warn(f"{package}.{name} is now {package}.{renamed[name]}",
                          DeprecationWarning, stacklevel=2)
            return __getattr__(renamed[name])
        if not name.startswith("_"):  # ``package.submodule``, as eager imports used to allow
            try:
                __import__(f"{package}.{name}")
                return sys.modules[f"{package}.{name}"]
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
