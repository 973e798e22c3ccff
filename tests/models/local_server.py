"""A real HTTP server on 127.0.0.1 that answers like a Chat Completions (or Messages) endpoint.

It runs in a thread (``ThreadingHTTPServer``, HTTP/1.1 keep-alive, so an async client pools its
connection the way it would against a real provider), answers each POST with the next scripted
answer (the last one repeats), and records every request body, so a test can count the
attempts a client made and read what it sent.

>>> with LocalServer([(200, {"ok": True})]) as server:
...     server.url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Answer", "LocalServer", "completion", "tool_call_completion"]

Answer = tuple[int, object]


def completion(text: str = "done") -> dict[str, Any]:
    """A Chat Completions body answering with text."""
    return {"id": "chatcmpl-local", "object": "chat.completion", "created": 0,
            "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}


def tool_call_completion(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """A Chat Completions body calling one tool, content null as OpenAI sends it."""
    call = {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}
    return {"id": "chatcmpl-local", "object": "chat.completion", "created": 0,
            "model": "local-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None,
                                     "tool_calls": [call]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}


class LocalServer:
    """Scripted answers over real HTTP; ``bodies`` holds every request's JSON body."""

    def __init__(self, answers: list[Answer]) -> None:
        if not answers:
            raise ValueError("LocalServer needs at least one answer")
        self.answers = list(answers)
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.bodies)

    def _next(self, path: str, body: Any) -> Answer:
        with self._lock:
            self.bodies.append(body)
            self.paths.append(path)
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients pool the connection

            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(size)
                status, body = server._next(self.path, json.loads(raw or b"null"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads ``bodies``, not a log."""

        return Handler

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
