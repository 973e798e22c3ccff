"""The README's code blocks run as written and print what the README shows.

Every fenced block of README.md is one of these, and the test fails on a block it cannot place:

- a ```python block runs in a fresh interpreter, from the folder named by a
  ``<!-- runs in: examples/x -->`` line right before it (else the repository's root). A block
  preceded by ``<!-- continues the block above -->`` runs in the namespace of the Python block
  before it (one program, several blocks). A block followed directly by an untagged block
  must print exactly that block. A block defining ``test_…`` functions is run by pytest.
  A block whose first line is ``# excerpt: …`` is not run: it shows part of a file that is
  run elsewhere. Excerpts and skipped blocks are counted against the numbers below, so a
  new excerpt cannot hide a broken block without this file changing too.
- a console block (untagged, its first line ``$ command``; or ```bash / ```sh / ```console)
  runs its commands one after the other in a fresh folder (holding a link to ``examples/``;
  or the folder its ``runs in`` names), each expected to print the output that follows it
  (on stdout; or stdout then stderr, as a terminal shows an error, which goes to stderr),
  and to exit 0, or with the code of an ``(exit N)`` line. A line ``...`` in shown output
  stands for lines left out. A block preceded by ``<!-- continues the block above -->``
  runs on in the folder of the console block before it. Commands that need a server, a
  network or a long run are in SKIPPED_COMMANDS, each with the reason and the test that runs
  the real thing.
- any other block (yaml, a layout, output) is text.

Output is compared line by line after normalising what differs between two honest runs: the
runs of spaces within a line (padding and alignment), timings, fresh API keys, and the
temporary folders and checkout path the commands ran in (and, for the few commands in
VOLATILE, what each real run draws afresh). Piped, ``tether`` wraps no line, so the README shows
each line whole, as a pipe or a wide terminal prints it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The checkout the README's outputs were pasted from: its paths in a shown output read as
#: this checkout's, so they normalise alike wherever the tests run.
PASTED_CHECKOUT = "/work/main"
#: A fenced block, also one indented inside a list item (its lines are dedented).
_BLOCK = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)``` *\n",
                    re.S | re.M)
#: ``<!-- runs in: examples/x -->`` right before a block: the folder it runs from.
_RUNS_IN = re.compile(r"<!-- runs in: (\S+) -->\s*$")
_CONTINUES = re.compile(r"<!-- continues the block above -->\s*$")
_SHELLS = {"bash", "sh", "console", "shell"}

#: Python blocks not run, by a phrase of their code: why, and what runs the real thing.
SKIPPED_PYTHON = {
    'Client("http://127.0.0.1:8765", "tk_…")':
        "needs a running `tether serve` and its key; tests/serve/test_server_process.py drives "
        "the same client against a real server process",
    'OTLPSpanExporter(endpoint="http://localhost:6006/v1/traces")':
        "wiring for an OTLP receiver (Phoenix on :6006); tests/tracing/test_otlp_crash.py "
        "exports to a real receiver",
    "rebase_time=time.time())": "continues the OTLP wiring above (not run)",
    'base_url="http://127.0.0.1:8080/v1"':
        "needs a llama.cpp server; tests/models/test_realmodel.py (realmodel) runs an agent "
        "against one",
}
#: Commands not run, by their beginning: why, and what runs the real thing.
SKIPPED_COMMANDS = {
    "pip install": "installs packages (and `python -m pytest` is the whole suite)",
    "tether serve examples/": "a long-running HTTP server; tests/serve/test_server_process.py "
                              "serves the same agent file from a real process",
    "curl ": "talks to a running server (the `tether serve` or `tether sim serve` above, not "
             "run here)",
    "tether sim serve": "a long-running HTTP server; tests/sim/wire/test_serve.py serves a "
                        "world and judges a curl agent with `tether sim verdict --url`",
    "tether sim verdict --url": "asks the `tether sim serve` of its block (not run here)",
    "tether worker": "a long-running worker killed with kill -9 mid-run; tests/test_examples.py "
                     "runs examples/order_worker.py under a real `tether worker`, "
                     "tests/chaos SIGKILLs workers and checks the takeover",
    "tether view --store runs.db campaign": "a long-running HTTP server; tests/view runs it "
                                            "in a real process and in Chromium",
    "python support.py": "needs a llama.cpp server (the realmodel tests run one)",
    "tether trace --store support.db": "reads the store support.py wrote (not run here)",
    "tether trace --store required.db": "reads a store written against a llama.cpp server",
}
#: How many Python blocks are excerpts, and how many are skipped: change these deliberately.
EXCERPTS = 3
SKIPPED_PYTHON_BLOCKS = 4

#: Normalised in shown and real output alike (see the module docstring).
_TIMING = re.compile(r"\b\d+(?:\.\d+)? ?ms\b")
_API_KEY = re.compile(r"\btk_[A-Za-z0-9_-]{20,}")
#: Commands whose output holds what each real run draws afresh, normalised for them alone:
#: ``crash-demo`` runs real processes on the wall clock (the journal's times), under a fresh
#: run id and seed, in a temporary folder.
VOLATILE = {
    "tether crash-demo": ((re.compile(r"\b\d+\.\d{3}\b"), "<t>"),
                          (re.compile(r"\brun_[0-9a-f]{16}\b"), "run_<id>"),
                          (re.compile(r"\bseed=\d+"), "seed=<n>"),
                          (re.compile(r"/tmp/tether-demo-\w+/"), "/tmp/<dir>/")),
}


@dataclass
class Block:
    line: int
    lang: str
    code: str
    lead: str  # the text between the previous block and this one
    output: str | None = None  # the untagged block right after it, if any

    @property
    def where(self) -> str:
        found = _RUNS_IN.search(self.lead)
        return found.group(1) if found else "."


@dataclass
class Program:
    """Python blocks run in one namespace."""

    blocks: list[Block] = field(default_factory=list)


@dataclass
class Command:
    line: int
    text: str
    shown: str | None  # None: the block shows no output for it
    exit_code: int


def _blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text()
    found: list[Block] = []
    end = 0
    for match in _BLOCK.finditer(text):
        lead = text[end:match.start()]
        width = len(match["indent"])
        code = "".join(line[width:] if line[:width].isspace() else line
                       for line in match["body"].splitlines(keepends=True))
        block = Block(text[:match.start()].count("\n") + 1, match["lang"], code, lead)
        if found and found[-1].lang == "python" and block.lang == "" and not lead.strip() \
                and not block.code.startswith("$ "):
            found[-1].output = block.code
            block.lang = "output"
        found.append(block)
        end = match.end()
    return found


BLOCKS = _blocks()


def _is_excerpt(block: Block) -> bool:
    return block.code.startswith("# excerpt:")


def _skip_reason(block: Block) -> str | None:
    return next((why for phrase, why in SKIPPED_PYTHON.items() if phrase in block.code), None)


def _programs() -> list[Program]:
    programs: list[Program] = []
    previous: Block | None = None
    for block in BLOCKS:
        if block.lang != "python" or _is_excerpt(block) or _skip_reason(block):
            continue
        if _CONTINUES.search(block.lead):
            assert previous is not None and programs, f"README.md:{block.line} continues nothing"
            programs[-1].blocks.append(block)
        else:
            programs.append(Program([block]))
        previous = block
    return programs


def _is_console(block: Block) -> bool:
    return block.lang in _SHELLS or (block.lang == "" and block.code.startswith("$ "))


def _commands(block: Block) -> list[Command]:
    """A console block's commands, each with the output shown after it."""
    lines = block.code.splitlines()
    prompted = block.code.startswith("$ ")
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or (not prompted and line.lstrip().startswith("#")):
            continue
        text = line[2:] if prompted else line
        while text.rstrip().endswith("\\") and i < len(lines):
            text = text.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
        shown: list[str] = []
        while prompted and i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        exit_code = 0
        if shown and re.fullmatch(r"\(exit \d+\)", shown[-1]):
            exit_code = int(shown.pop()[6:-1])
        commands.append(Command(block.line, text.strip(),
                                "\n".join(shown) if prompted else None, exit_code))
    return commands


def _skipped(command: Command) -> str | None:
    """Why the command is not run (None: it is), if any part of it is on the skip list."""
    parts = [part.strip() for part in command.text.split("&&")]
    return next((why for start, why in SKIPPED_COMMANDS.items()
                 if any(part.startswith(start) for part in parts)), None)


CONSOLES = [b for b in BLOCKS if _is_console(b)]


Volatile = tuple[tuple[re.Pattern[str], str], ...]


def _normalise(text: str, *, paths: dict[str, str], volatile: Volatile = ()) -> list[str]:
    """``text`` as lines, each with its runs of whitespace made one space (padding and
    alignment depend on the width and on the values around), without the blank lines at
    either end."""
    for real, shown in paths.items():
        text = text.replace(real, shown)
    text = _API_KEY.sub("tk_<key>", _TIMING.sub("<ms>", text))
    for pattern, replacement in volatile:
        text = pattern.sub(replacement, text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _matches(shown: str, real: str, *, paths: dict[str, str], volatile: Volatile = ()) -> bool:
    """Whether ``real`` prints the lines of ``shown`` (normalised), where a ``...`` line of
    ``shown`` stands for any number of lines. The checkout the README's outputs were pasted
    from reads as this checkout in ``shown`` only (a clone at ``/x/work/main`` must not turn
    into ``/x/x/work/main``)."""
    parts = [_normalise(p.replace(PASTED_CHECKOUT, str(ROOT)), paths=paths, volatile=volatile)
             for p in re.split(r"^\s*(?:\.\.\.|…)\s*$", shown, flags=re.M)]
    lines = _normalise(real, paths=paths, volatile=volatile)
    if len(parts) == 1:
        return lines == parts[0]
    head, *middle, tail = parts
    if lines[:len(head)] != head or (tail and lines[len(lines) - len(tail):] != tail):
        return False
    at, end = len(head), len(lines) - len(tail)
    for part in middle:
        found = next((i for i in range(at, end - len(part) + 1)
                      if lines[i:i + len(part)] == part), None)
        if found is None:
            return False
        at = found + len(part)
    return at <= end


# -- the blocks are all accounted for --------------------------------------------------------


def test_every_block_is_run_or_deliberately_not() -> None:
    """Each Python block runs, or is one of the counted excerpts and skips; each console
    command runs or is on the skip list, and each skip-list entry is used."""
    python = [b for b in BLOCKS if b.lang == "python"]
    assert sum(_is_excerpt(b) for b in python) == EXCERPTS, \
        [b.line for b in python if _is_excerpt(b)]
    assert sum(bool(_skip_reason(b)) for b in python) == SKIPPED_PYTHON_BLOCKS
    assert sum(len(p.blocks) for p in _programs()) == \
        len(python) - EXCERPTS - SKIPPED_PYTHON_BLOCKS
    commands = [c for b in CONSOLES for c in _commands(b)]
    for start in SKIPPED_COMMANDS:
        assert any(_skipped(c) == SKIPPED_COMMANDS[start] for c in commands), \
            f"the skip entry {start!r} matches no command of the README"
    assert sum(_skipped(c) is None for c in commands) >= 15
    unplaced = [b.line for b in BLOCKS
                if b.lang not in {"python", "output", "yaml", "", *_SHELLS}]
    assert not unplaced, f"README blocks in a language this test does not know: {unplaced}"


def _code_lines(code: str) -> list[str]:
    """The lines of ``code`` without comments and ``...``, whitespace collapsed."""
    lines = (" ".join(line.split("  #")[0].split()) for line in code.splitlines())
    return [line for line in lines if line and not line.startswith("#") and line != "..."]


def test_an_excerpt_is_found_in_the_file_it_names() -> None:
    """An excerpt names its file on its first line (``# excerpt: path — what``), and every
    line of code it shows is in that file (layout aside): an excerpt cannot drift from code
    that runs."""
    for block in BLOCKS:
        if block.lang != "python" or not _is_excerpt(block):
            continue
        named = block.code.splitlines()[0].removeprefix("# excerpt:").split()[0]
        source = ROOT / named
        assert source.is_file(), f"README.md:{block.line}: the excerpt names no file: {named}"
        text = " ".join(source.read_text().split())
        missing = [line for line in _code_lines(block.code) if line not in text]
        assert not missing, f"README.md:{block.line}: not in {named}: {missing}"


# -- Python blocks ---------------------------------------------------------------------------

_DRIVER = textwrap.dedent("""
    import json, sys
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    for line, code in blocks:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
        sys.stdout.flush()
        print(%r, flush=True)
""")
_SEPARATOR = "\x00-- next README block --\x00"

PROGRAMS = _programs()


def _env(where: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / where), os.environ.get("PYTHONPATH", "")]), "NO_COLOR": "1"}


@pytest.mark.parametrize("program", PROGRAMS,
                         ids=[f"README.md:{p.blocks[0].line}" for p in PROGRAMS])
def test_a_python_block_runs_and_prints_what_the_readme_shows(program: Program,
                                                              tmp_path: Path) -> None:
    """The blocks run in a fresh interpreter, from the folder the README names, and each
    prints the output shown after it."""
    where = program.blocks[0].where
    first = program.blocks[0]
    if re.search(r"^def test_", first.code, re.M):
        assert len(program.blocks) == 1, "a pytest block is run alone"
        test_file = tmp_path / "test_readme_block.py"
        test_file.write_text(first.code)
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"--rootdir={ROOT / where}", str(test_file)],
                              capture_output=True, text=True,
                              cwd=ROOT / where, env=_env(where), timeout=120, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert re.search(r"\b1 passed\b", done.stdout), done.stdout
        return
    payload = json.dumps([[b.line, b.code] for b in program.blocks])
    done = subprocess.run([sys.executable, "-c", _DRIVER % _SEPARATOR], input=payload,
                          capture_output=True, text=True, cwd=ROOT / where, env=_env(where),
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.split(_SEPARATOR + "\n")
    assert len(printed) == len(program.blocks) + 1 and printed[-1] == ""
    for block, out in zip(program.blocks, printed, strict=False):
        if block.output is not None:
            assert out == block.output, f"README.md:{block.line} printed:\n{out}"


# -- console blocks --------------------------------------------------------------------------


def _argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    if words[0] == "tether":
        # The installed command, as a reader runs it (its usage lines name it `tether`).
        script = Path(sys.executable).with_name("tether")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "tether.cli"]
        return [*program, *words[1:]]
    if words[0] == "python":
        return [sys.executable, *words[1:]]
    raise AssertionError(f"not a command this test runs: {command!r}; add it to "
                         "SKIPPED_COMMANDS with the reason")


def _folder(block: Block, tmp_path: Path) -> Path:
    """Where a console block runs: the folder its ``runs in`` names, else a fresh one that
    sees the repository's examples."""
    if block.where != ".":
        return ROOT / block.where
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "examples").symlink_to(ROOT / "examples")
    return cwd


def _with_private_tmp(command: str, tmp_path: Path) -> str:
    """``/tmp/x`` folders the README names, as fresh folders of this test's own."""
    return re.sub(r"(?<![\w/])/tmp/([\w.-]+)", lambda m: str(tmp_path / "tmp" / m.group(1)),
                  command)


def _sessions() -> list[list[Block]]:
    """Console blocks run together: a block after ``<!-- continues the block above -->``
    continues the console block before it, in the same folder."""
    sessions: list[list[Block]] = []
    for block in CONSOLES:
        if _CONTINUES.search(block.lead):
            assert sessions, f"README.md:{block.line} continues nothing"
            sessions[-1].append(block)
        else:
            sessions.append([block])
    return [s for s in sessions if any(_skipped(c) is None for b in s for c in _commands(b))]


RUNNABLE = _sessions()


@pytest.mark.parametrize("session", RUNNABLE, ids=[f"README.md:{s[0].line}" for s in RUNNABLE])
def test_a_console_block_runs_and_prints_what_the_readme_shows(session: list[Block],
                                                               tmp_path: Path) -> None:
    """The block's commands run in order, each exiting as shown and printing what is shown
    (commands on the skip list are passed over; the skip list names the commands that depend
    on a skipped one too)."""
    block = session[0]
    cwd = _folder(block, tmp_path)
    (tmp_path / "tmp").mkdir()
    env = _env(".")
    paths = {str(tmp_path / "tmp"): "/tmp", str(cwd): ".", str(ROOT): "<repo>"}
    for command in [c for b in session for c in _commands(b)]:
        if _skipped(command) is not None:
            continue
        text = command.text
        if text.startswith("export "):
            name, _, value = text[len("export "):].split("#")[0].strip().partition("=")
            env[name] = value
            continue
        if text.endswith("&"):
            raise AssertionError(f"README.md:{command.line}: a background command must be "
                                 f"on the skip list: {text}")
        done = subprocess.run(_argv(_with_private_tmp(text, tmp_path)), capture_output=True,
                              text=True, cwd=cwd, env=env, timeout=180, check=False)
        # A process killed by signal N exits as a shell reports it: 128 + N.
        exit_code = done.returncode if done.returncode >= 0 else 128 - done.returncode
        assert exit_code == command.exit_code, \
            f"README.md:{command.line}: {text}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if command.shown is not None:
            volatile = next((v for start, v in VOLATILE.items() if text.startswith(start)), ())
            # What a terminal shows: stdout, then stderr where the command ends on an error
            # (errors go to stderr; progress there too, which the README does not show).
            assert any(_matches(command.shown, printed, paths=paths, volatile=volatile)
                       for printed in (done.stdout, done.stdout + done.stderr)), \
                f"README.md:{command.line}: `{text}` printed:\n{done.stdout}"


NOT_RUN = [(b.line, b.code.splitlines()[0], "an excerpt") for b in BLOCKS
           if b.lang == "python" and _is_excerpt(b)] + \
    [(b.line, b.code.splitlines()[0], _skip_reason(b) or "") for b in BLOCKS
     if b.lang == "python" and _skip_reason(b)] + \
    [(c.line, c.text, _skipped(c) or "") for b in CONSOLES for c in _commands(b) if _skipped(c)]


@pytest.mark.parametrize(("line", "what", "why"), NOT_RUN,
                         ids=[f"README.md:{line}:{what[:40]}" for line, what, _ in NOT_RUN])
def test_what_is_not_run_is_reported_with_its_reason(line: int, what: str, why: str) -> None:
    """Each block or command left out shows up in the test report as a skip, with why."""
    assert why
    pytest.skip(f"README.md:{line}: not run ({why}): {what}")


def test_the_output_comparison_can_fail() -> None:
    """Normalising layout, timings and keys leaves every word in place: a changed word, a
    missing line or lines in the wrong order do not match."""
    paths = {"/tmp/x": "/tmp"}
    assert _matches("a  b   \n  c 1.5 ms\n", "a b\nc 2 ms\n\n", paths=paths)
    assert not _matches("a b\nc", "a b c", paths=paths)  # a line's end is kept
    assert not _matches("a b c", "a b d", paths=paths)
    assert _matches("saved in /tmp/out", "saved in /tmp/x/out", paths=paths)
    assert _matches("first\n...\nlast", "first\nmiddle\nmore\nlast", paths=paths)
    assert not _matches("first\n...\nlast", "last\nfirst", paths=paths)
    assert not _matches("key tk_" + "a" * 43, "key tk_short", paths=paths)
    # A pasted checkout path matches this checkout's, and a real path that merely contains
    # the pasted one is left alone.
    here = {str(ROOT): "<repo>"}
    assert _matches(f"{PASTED_CHECKOUT}/examples/a.yaml", f"{ROOT}/examples/a.yaml", paths=here)
    assert not _matches(f"{PASTED_CHECKOUT}/a.yaml", f"/elsewhere{PASTED_CHECKOUT}/a.yaml",
                        paths=here) or str(ROOT) == f"/elsewhere{PASTED_CHECKOUT}"
