"""tether._lazy: one loader for every package's public names (imported on first use).

Each check builds a real package on disk and imports it in a fresh interpreter, so the import
system's own behaviour (a loaded submodule set on its package) is what is tested.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

INIT = '''
from tether._lazy import attach as _attach
__all__ = ["fast", "helper", "renamed"]
_WHERE = {"fast": "pkg.impl", "helper": "pkg.helper", "renamed": "pkg.impl:spelt_otherwise"}
__getattr__, __dir__ = _attach(__name__, _WHERE, __all__, renamed={"quick": "fast"})
'''
FILES = {
    "pkg/__init__.py": INIT,
    "pkg/impl.py": "def fast():\n    return 1\n\ndef spelt_otherwise():\n    return 2\n",
    "pkg/helper.py": "def helper():\n    return 3\n",  # a submodule sharing a public name
    "pkg/other.py": "VALUE = 4\n",
    "pkg/broken.py": "import no_such_dependency_here\n",
}


def run(tmp_path: Path, code: str) -> str:
    """``code`` run in a fresh interpreter that sees the toy package; its stdout."""
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_names_load_on_first_use_and_stay(tmp_path: Path) -> None:
    """Importing the package loads no submodule; a name loads its module once and is then a
    plain attribute of the package."""
    out = run(tmp_path, """
        import sys, pkg
        print("pkg.impl" in sys.modules)
        print(pkg.fast(), pkg.renamed(), "pkg.impl" in sys.modules, "fast" in vars(pkg))
    """)
    assert out.splitlines() == ["False", "1 2 True True"]


def test_submodule_does_not_replace_the_exported_name(tmp_path: Path) -> None:
    """Loading ``pkg.helper`` (the module) leaves ``pkg.helper`` the function it exports."""
    out = run(tmp_path, """
        import pkg.helper
        from pkg import helper
        import pkg
        print(callable(helper), pkg.helper is helper, helper())
    """)
    assert out == "True True 3"


def test_submodules_errors_and_dir(tmp_path: Path) -> None:
    """``pkg.other`` imports a submodule; an unknown name is an AttributeError naming the
    package; a missing dependency inside a submodule is not hidden; dir() lists every name."""
    out = run(tmp_path, """
        import pkg
        print(pkg.other.VALUE)
        try:
            pkg.nothing
        except AttributeError as e:
            print(e)
        try:
            pkg.broken
        except ModuleNotFoundError as e:
            print(e.name)
        print({"fast", "helper", "renamed"} <= set(dir(pkg)))
    """)
    assert out.splitlines() == ["4", "module 'pkg' has no attribute 'nothing'",
                                "no_such_dependency_here", "True"]


def test_a_former_name_resolves_to_the_current_one_with_a_warning(tmp_path: Path) -> None:
    """A name listed as renamed gives the current name's value and a DeprecationWarning naming
    it, every time, and is neither exported nor listed by dir()."""
    out = run(tmp_path, """
        import warnings, pkg
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from pkg import quick
            again = pkg.quick
        # (a from-import asks twice: hasattr, then getattr)
        print(quick is pkg.fast, again is quick, sorted({str(w.message) for w in caught}))
        print("quick" in dir(pkg), "quick" in pkg.__all__, "quick" in vars(pkg))
    """)
    assert out.splitlines() == [
        "True True ['pkg.quick is now pkg.fast']",
        "False False False"]


def test_the_policy_names_before_the_rename_still_import() -> None:
    """``from tether.policy import Rule, Decision`` (the names before PolicyRule and
    PolicyDecision) still work, deprecated; ``tether.Rule`` stays the retry rule."""
    import warnings

    import tether
    import tether.policy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from tether.policy import Decision, Rule
    assert Rule is tether.policy.PolicyRule and Decision is tether.policy.PolicyDecision
    assert sorted({str(w.message) for w in caught}) == [
        "tether.policy.Decision is now tether.policy.PolicyDecision",
        "tether.policy.Rule is now tether.policy.PolicyRule"]
    assert all(w.category is DeprecationWarning for w in caught)
    assert tether.Rule is not tether.policy.PolicyRule
