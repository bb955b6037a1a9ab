"""The life of an HTTP stand-in on loopback: a threaded server on a free port of 127.0.0.1, started once and stopped
once, whose address stays known after the stop (so a client built before it meets a refused connection, as a
vendor outage looks)."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackServer(ThreadingHTTPServer):
    """Serves ``handler`` on a free loopback port for ``owner``, which the handler reaches as ``self.server.owner``."""

    daemon_threads = True

    def __init__(self, owner: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)  # port 0: any free port
        self.owner = owner


class JsonHandler(BaseHTTPRequestHandler):
    """Hands each GET and POST to the owner's ``_handle(method, path, headers, body) -> (status, json text)``."""

    server: LoopbackServer

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, text = self.server.owner._handle(method, self.path, headers, raw)
        payload = text.encode()
        with contextlib.suppress(ConnectionError):  # the client gave up waiting
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read what they need from the owner
        pass


class LoopbackService:
    """Start, stop and address of a stand-in; subclasses give a name, and ``_handle`` for the JsonHandler (or a
    handler of their own)."""

    name = "stand-in"
    handler: type[BaseHTTPRequestHandler] = JsonHandler

    def __init__(self) -> None:
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url if self._port else None!r})"

    def start(self) -> Self:
        if self._server is not None or self._port is not None:
            raise RuntimeError(f"{self.name} already started")
        self._server = LoopbackServer(self, self.handler)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1)

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"{self.name} not started")
        return f"http://127.0.0.1:{self._port}"
