"""Two real `tether serve` processes on one machine share one SQLite store: neither takes the
other's live turn for its own, and a server restarted on its address takes its turn back at
once."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tether.serve.cli import default_owner
from tether.store.sqlite import SQLiteStore

from .test_server_process import CLI, GATED, GATED_AGENT, Api, make_key

#: The gated refund of test_server_process, also logging which process entered the handler.
COUNTED = GATED.replace(
    '    (where / "entered").write_text(ctx.idempotency_key or "")\n',
    '    (where / "entered").write_text(ctx.idempotency_key or "")\n'
    '    with (where / "entries").open("a") as f:\n'
    '        f.write(f"{os.getpid()}\\n")\n')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(tmp: Path, keys: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """`tether serve` of the counted gated agent on ``port`` with the default worker name."""
    proc = subprocess.Popen(
        [*CLI, "serve", str(tmp / "gated.yaml"), "--store", str(tmp / "runs.db"), "--keys",
         str(keys), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "GATE_DIR": str(tmp)})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://"), (
            line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _entries(tmp: Path) -> list[int]:
    path = tmp / "entries"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _until(proc: subprocess.Popen[str], tmp: Path, needle: str, budget_s: float = 30.0,
           ) -> str:
    """Read ``proc``'s stderr until it says ``needle`` or ``proc`` enters the handler."""
    assert proc.stderr is not None
    said, give_up = "", time.monotonic() + budget_s
    while needle not in said and proc.pid not in _entries(tmp) and time.monotonic() < give_up:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            said += os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
    return said


def _setup(tmp: Path) -> tuple[Path, str]:
    (tmp / "gated.yaml").write_text(GATED_AGENT)
    (tmp / "gated.py").write_text(COUNTED)
    keys = tmp / "keys.yaml"
    return keys, make_key(keys, "shop", "ada")


def test_a_second_server_on_the_machine_leaves_the_first_ones_live_turn_alone(
        tmp_path: Path) -> None:
    """Server A's turn is inside its write when server B starts on the same store and host:
    B sees the open turn, finds it leased by another worker and leaves it; the write's
    handler ran in A only, and the turn finishes on A."""
    keys, ada = _setup(tmp_path)
    port_a, port_b = _free_port(), _free_port()
    with _serve(tmp_path, keys, port_a) as a:
        me = Api(f"http://127.0.0.1:{port_a}", ada)
        me.json("POST", "/v1/sessions", {"agent": "gated", "session_id": "ada"})
        before = me.say("ada", "Refund ch_1 please", stop_at="tool.started")
        run_id = before[0][2]["run_id"]
        assert _entries(tmp_path) == [a.pid]
        with _serve(tmp_path, keys, port_b) as b:
            said = _until(b, tmp_path, "left to it")
            assert "left to it" in said and b.pid not in _entries(tmp_path), said
            (tmp_path / "open").write_text("")
            last = max(i for i, _, _ in before if i is not None)
            rest = me.stream("GET", f"/v1/executions/{run_id}/events?after={last}")
            assert rest[-1][1] == "turn.finished" and rest[-1][2]["status"] == "completed"
        me.http.close()
    assert _entries(tmp_path) == [a.pid]
    assert (tmp_path / "effects").read_text().split() == ["refund:ch_1"]
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        assert store.get_run(run_id).owner in (  # type: ignore[union-attr]
            None, default_owner("127.0.0.1", port_a))
    finally:
        store.close()


def test_a_server_restarted_on_its_address_takes_its_turn_back_at_once(
        tmp_path: Path) -> None:
    """Server A is SIGKILLed inside a turn's write (its lease live for 30 s more); a server
    started on A's address is A under its default name: it resumes the turn at start, and the
    idempotent write is re-issued once with the same key."""
    keys, ada = _setup(tmp_path)
    port = _free_port()
    with _serve(tmp_path, keys, port) as a:
        me = Api(f"http://127.0.0.1:{port}", ada)
        me.json("POST", "/v1/sessions", {"agent": "gated", "session_id": "ada"})
        before = me.say("ada", "Refund ch_1 please", stop_at="tool.started")
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        me.http.close()
    run_id = before[0][2]["run_id"]
    (tmp_path / "open").write_text("")
    with _serve(tmp_path, keys, port) as again:
        said = _until(again, tmp_path, "left to it")
        assert "left to it" not in said and again.pid in _entries(tmp_path), said
        me = Api(f"http://127.0.0.1:{port}", ada)
        last = max(i for i, _, _ in before if i is not None)
        rest = me.stream("GET", f"/v1/executions/{run_id}/events?after={last}")
        assert rest[-1][1] == "turn.finished" and rest[-1][2]["status"] == "completed"
        me.http.close()
    assert _entries(tmp_path) == [a.pid, again.pid]
    assert (tmp_path / "effects").read_text().split() == ["refund:ch_1"]
