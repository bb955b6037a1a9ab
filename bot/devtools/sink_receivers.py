"""Real receivers for the audit sinks, on loopback, for tests and the bench: what a SIEM's collector would run.

* ``HmacReceiver``: an HTTP server that checks each POST's HMAC signature (``bot.adapters.webhook.verify``) and
  answers 401 to a bad one, 2xx to a good one (or what ``fail_next`` scripts), keeping the events it accepted.
* ``SyslogReceiver``: a UDP or TCP syslog listener that parses every RFC 5424 message (TCP: octet-counted frames,
  RFC 6587) into its header, structured data and JSON body, and refuses to count a frame that does not parse.

Each keeps its port across ``stop`` and ``start``, so a sender built before an outage meets a refused connection
while it is down and the same address once it is back, as with a collector that restarts.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from bot.adapters.webhook import verify
from bot.devtools.ports import free_port

# RFC 5424: HEADER SP STRUCTURED-DATA SP MSG, as the syslog sink writes it (one SD-ELEMENT, a JSON MSG).
RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<hostname>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"\[(?P<sd_id>[^ \]=\"]+)(?P<params>(?: [^ =\]\"]+=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*)\] (?P<msg>.*)\Z",
    re.DOTALL,
)
SD_PARAM = re.compile(r" ([^ =\]\"]+)=\"((?:[^\"\\\]]|\\[\"\\\]])*)\"")


@dataclass(frozen=True)
class SyslogMessage:
    pri: int
    timestamp: str
    hostname: str
    app: str
    msgid: str
    sd_id: str
    params: dict[str, str]
    event: dict[str, Any]


def parse_rfc5424(raw: bytes) -> SyslogMessage:
    """One message, or ValueError saying why it is not RFC 5424 as the sink writes it."""
    match = RFC5424.match(raw.decode("ascii"))
    if match is None:
        raise ValueError(f"not an RFC 5424 message: {raw[:80]!r}")
    params = {name: re.sub(r"\\([\"\\\]])", r"\1", value) for name, value in SD_PARAM.findall(match["params"])}
    return SyslogMessage(
        int(match["pri"]),
        match["timestamp"],
        match["hostname"],
        match["app"],
        match["msgid"],
        match["sd_id"],
        params,
        json.loads(match["msg"]),
    )


class _Collector:
    """What a receiver accepted, in arrival order, with a wait that does not sleep longer than needed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self._changed = threading.Condition()

    def accept(self, events: list[dict[str, Any]]) -> None:
        with self._changed:
            self.events.extend(events)
            self._changed.notify_all()

    def reject(self, why: str) -> None:
        with self._changed:
            self.rejected.append(why)
            self._changed.notify_all()

    def seqs(self) -> list[int]:
        with self._changed:
            return [int(event["seq"]) for event in self.events]

    def wait_for_seq(self, seq: int, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: any(e["seq"] >= seq for e in self.events), timeout=timeout)


class _HmacHandler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = owner.answer(
            self.headers.get("X-Breakglass-Timestamp"), self.headers.get("X-Breakglass-Signature"), body
        )
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: HmacReceiver, port: int) -> None:
        super().__init__(("127.0.0.1", port), _HmacHandler)
        self.owner = owner


class HmacReceiver(_Collector):
    def __init__(self, secret: str, path: str = "/audit") -> None:
        super().__init__()
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.posts = 0
        self._failures: list[int] = []
        self._server: _HttpServer | None = None

    def start(self) -> HmacReceiver:
        self._server = _HttpServer(self, self.port)
        threading.Thread(target=self._server.serve_forever, name="hmac-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` valid POSTs are answered ``status`` and not kept."""
        self._failures += [status] * n

    def answer(self, timestamp: str | None, signature: str | None, body: bytes) -> int:
        self.posts += 1
        if not verify(self.secret, timestamp, signature, body, time.time()):
            self.reject("bad signature")
            return 401
        if self._failures:
            return self._failures.pop(0)
        self.accept(json.loads(body))
        return 200

    def __enter__(self) -> HmacReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyslogReceiver(_Collector):
    """RFC 5424 over UDP (a datagram per message) or TCP (octet-counted frames)."""

    def __init__(self, protocol: Literal["udp", "tcp"]) -> None:
        super().__init__()
        self.protocol = protocol
        self.port = free_port()
        self.messages: list[SyslogMessage] = []
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> SyslogReceiver:
        kind = socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM
        listener = socket.socket(socket.AF_INET, kind)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        if self.protocol == "tcp":
            listener.listen()
        self._listener = listener
        target = self._datagrams if self.protocol == "udp" else self._accept
        threading.Thread(target=target, args=(listener,), name=f"syslog-{self.protocol}", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        for each in [listener, *connections]:
            if each is not None:
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)
                each.close()

    def _take(self, raw: bytes) -> None:
        try:
            message = parse_rfc5424(raw)
        except (ValueError, UnicodeDecodeError) as error:
            self.reject(str(error))
            return
        with self._lock:
            self.messages.append(message)
        self.accept([message.event])

    def _datagrams(self, listener: socket.socket) -> None:
        while True:
            try:
                raw = listener.recv(70_000)
            except OSError:
                return
            if not raw:
                return
            self._take(raw)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=self._frames, args=(connection,), daemon=True).start()

    def _frames(self, connection: socket.socket) -> None:
        """RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG, again and again."""
        buffer = b""
        while True:
            try:
                chunk = connection.recv(65_536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if not length.isdigit():
                    self.reject(f"not octet-counted: {buffer[:40]!r}")
                    return
                if len(rest) < int(length):
                    break
                self._take(rest[: int(length)])
                buffer = rest[int(length) :]

    def __enter__(self) -> SyslogReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
