"""``tether view``'s bad input: one error line on stderr naming the problem, exit 2, no
traceback; and its banner on stdout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import typer
from typer.testing import CliRunner

from tether.view.cli import view

from .conftest import viewing

app = typer.Typer()
app.command()(view)
runner = CliRunner()


def _refused(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"NO_COLOR": "1", "TETHER_STORE": ""})
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    return " ".join(result.stderr.split())


def test_a_missing_store_is_named(tmp_path: Path) -> None:
    """A store file that does not exist is refused (not created empty) and named."""
    message = _refused("--store", str(tmp_path / "nope.db"))
    assert "nope.db" in message and "name an existing store" in message
    assert not (tmp_path / "nope.db").exists()


def test_a_folder_that_is_not_a_campaign_is_named(tmp_path: Path, store_path: Path) -> None:
    """DIR without results.json is refused, naming the folder and what was expected."""
    message = _refused("--store", str(store_path), str(tmp_path))
    assert f"{tmp_path} is not a campaign folder: expected results.json" in message


def test_a_remote_host_needs_allow_remote(store_path: Path) -> None:
    """Binding beyond loopback is refused without --allow-remote."""
    message = _refused("--store", str(store_path), "--host", "0.0.0.0")
    assert "--host 0.0.0.0 is beyond this machine" in message and "--allow-remote" in message


def test_nothing_to_view_and_memory_are_refused() -> None:
    """No store and no folder, or a memory: store (always empty), are usage errors."""
    assert "nothing to view" in _refused()
    assert "memory: is a new, empty store" in _refused("--store", "memory:")


def test_without_the_serve_extra_the_hint_names_it(store_path: Path) -> None:
    """With Starlette not importable, the error names the extra to install."""
    code = ("import sys; sys.modules['starlette'] = None; import typer; "
            "from tether.view.cli import view; typer.run(view)")
    done = subprocess.run([sys.executable, "-c", code, "--store", str(store_path)],
                          capture_output=True, text=True, timeout=60, env={"NO_COLOR": "1",
                                                                           "PATH": "/usr/bin"})
    assert done.returncode == 2 and done.stdout == "", done
    assert "tether view needs starlette" in done.stderr
    assert "pip install 'tether[serve]'" in done.stderr and "Traceback" not in done.stderr


def test_the_banner_is_the_url_on_stdout(store_path: Path) -> None:
    """A running viewer prints ``viewing URL`` first, and its stderr stays quiet."""
    with viewing("--store", str(store_path)) as (url, proc):
        assert url.startswith("http://127.0.0.1:")
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_open_hands_the_url_to_the_browser(store_path: Path, tmp_path: Path) -> None:
    """--open starts the user's browser ($BROWSER here: a script noting what it was given)
    on the viewer's URL; without --open no browser is started."""
    noted = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {noted}\n')
    browser.chmod(0o755)
    with viewing("--store", str(store_path), env={"BROWSER": str(browser)}):
        pass
    assert not noted.exists()
    with viewing("--store", str(store_path), "--open", env={"BROWSER": str(browser)}) as (
            url, _):
        for _ in range(200):  # the browser is started after the banner is printed
            if noted.exists() and noted.read_text():
                break
            time.sleep(0.05)
        assert noted.read_text().split() == [f"{url}/"]
