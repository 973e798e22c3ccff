"""The one import resolver: package.module:attr and path/to/file.py:attr, with one error style."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tether import imports
from tether.errors import UsageError
from tether.sessions.loader import import_object as agent_file_import
from tether.sim.agent_ref import load_callable

WHAT = "agent.yaml: tools[0]"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_a_module_path_resolves_to_its_attribute() -> None:
    """package.module:attr is imported as usual."""
    assert imports.import_object("json:dumps", None, what=WHAT) is __import__("json").dumps


def test_a_file_resolves_relative_to_the_base_dir_and_is_imported_once(tmp_path: Path) -> None:
    """file.py:attr is read from base_dir; the same file named relatively and absolutely is
    one module (its top level ran once)."""
    path = write(tmp_path / "agents", "once.py", "RUNS = []\nRUNS.append(1)\nvalue = RUNS\n")
    relative = imports.import_object("agents/once.py:value", tmp_path, what=WHAT)
    absolute = imports.import_object(f"{path}:value", None, what=WHAT)
    assert relative is absolute and relative == [1]


def test_a_files_siblings_import_as_from_a_script(tmp_path: Path) -> None:
    """A file's own folder is on the path while it is loaded, so `import sibling` works."""
    write(tmp_path, "sibling_for_imports_test.py", "ANSWER = 42\n")
    write(tmp_path, "main_for_imports.py",
          "from sibling_for_imports_test import ANSWER\nvalue = ANSWER\n")
    assert imports.import_object("main_for_imports.py:value", tmp_path, what=WHAT) == 42


def test_a_package_beside_the_naming_file_imports(tmp_path: Path) -> None:
    """package.module:attr also looks in base_dir (the folder of the file that named it)."""
    write(tmp_path / "pkg_beside_for_imports", "__init__.py", "")
    write(tmp_path / "pkg_beside_for_imports", "tools.py", "value = 'beside'\n")
    found = imports.import_object("pkg_beside_for_imports.tools:value", tmp_path, what=WHAT)
    assert found == "beside"


def test_the_agent_file_loader_and_the_scenario_loader_share_one_resolution(
        tmp_path: Path) -> None:
    """An agent file and a scenario naming one file get the very same function."""
    write(tmp_path, "shared_script.py", "def script(request):\n    return None\n")
    from_agent_file = agent_file_import("shared_script.py:script", tmp_path, what=WHAT)
    from_scenario = load_callable("shared_script.py:script", tmp_path, what="model.script")
    assert from_agent_file is from_scenario


@pytest.mark.parametrize("spec", ["no_colon", "pkg.mod:", ":attr", "pkg.mod:not-an-id", "", 7])
def test_a_malformed_spec_says_what_was_expected_and_found(spec: object) -> None:
    """Anything but <module or file>:<identifier> is refused before any import."""
    with pytest.raises(UsageError) as caught:
        imports.import_object(spec, None, what=WHAT, hint="a tool")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{WHAT}: expected package.module:attr or path/to/file.py:attr "
                              "(a tool), found ")


@pytest.mark.parametrize(("spec", "said"), [
    ("no_such_pkg_for_imports.mod:x", "no module 'no_such_pkg_for_imports' (is the package "
                                      "installed, or in one of"),
    ("missing_for_imports.py:x", "no file "),
    ("json:no_such_attribute", "json has no 'no_such_attribute'; name one of its attributes"),
])
def test_what_cannot_be_found_is_named_with_the_fix(tmp_path: Path, spec: str, said: str) -> None:
    """A missing module, file or attribute: what is missing, and where it was looked for."""
    with pytest.raises(UsageError) as caught:
        imports.import_object(spec, tmp_path, what=WHAT)
    assert str(caught.value).startswith(f"{WHAT}: ")
    assert said in str(caught.value)


def test_a_module_missing_a_dependency_is_its_own_import_failure(tmp_path: Path) -> None:
    """A module that exists but imports one that does not is not reported as missing itself."""
    write(tmp_path, "needs_dep_for_imports.py", "import no_such_dependency_for_imports\nx = 1\n")
    with pytest.raises(UsageError) as caught:
        imports.import_object("needs_dep_for_imports:x", tmp_path, what=WHAT)
    message = str(caught.value)
    assert "importing needs_dep_for_imports failed: ModuleNotFoundError" in message
    assert "no_such_dependency_for_imports" in message
    assert "needs_dep_for_imports" not in sys.modules


@pytest.mark.parametrize("body", ["raise RuntimeError('broken at import')",
                                  "raise SystemExit(2)"])
def test_a_file_failing_at_import_is_not_left_half_imported(tmp_path: Path, body: str) -> None:
    """An exception (or an exit) at import is a UsageError, and a second try imports again
    rather than handing out the half-run module."""
    write(tmp_path, "broken_for_imports.py", f"value = 1\n{body}\n")
    for _ in range(2):
        with pytest.raises(UsageError, match=r"importing .*broken_for_imports\.py failed: "
                                             r"(RuntimeError: broken at import|SystemExit: 2)"):
            imports.import_object("broken_for_imports.py:value", tmp_path, what=WHAT)


def test_the_resolver_is_a_leaf_below_sessions_and_sim() -> None:
    """tether.imports imports nothing of tether but errors and specs, so any layer may use it."""
    source = Path(imports.__file__).read_text()
    found = {node.module for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.ImportFrom) and node.module
             and node.module.startswith("tether")}
    assert found <= {"tether.errors", "tether.specs"}


def test_a_missing_function_is_named_as_one() -> None:
    """With noun="function" the missing attribute is said to be a missing function."""
    with pytest.raises(UsageError, match=r"json has no 'nope' \(it defines no function 'nope'\)"):
        imports.import_object("json:nope", None, what="model.script 'json:nope'",
                              noun="function")
