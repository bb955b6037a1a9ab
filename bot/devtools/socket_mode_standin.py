"""Slack's Socket Mode, stood in for on loopback: the Web API stand-in answers ``apps.connections.open`` for the app
token with the address of a WebSocket endpoint here, which takes the bot's connection, says hello as Slack does and
answers its pings. A test hands Slack's requests to the bot as Slack does in Socket Mode (``deliver``: an envelope
over the socket, answered by the bot's ack frame), or through ``SocketSender``, which sends what ``SlackSender``
would POST; so the same test can drive the bot over HTTP or over the socket.

The WebSocket side is the least of RFC 6455 the SDK's built-in client uses: the handshake, unmasked frames out and
masked frames in (text, ping, pong, close), with 7-, 16- and 64-bit lengths both ways (a modal's ack is large).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

import requests

from bot.devtools.slack_requests import FORM, JSON, SlackSender
from bot.devtools.slack_standin import ApiCall, SlackStandIn

APP_TOKEN = "xapp-1-A0BREAKGLASS-1029384756-5f0c9a7e3b2d4816e0c97f3b5a1d2e84"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed key suffix
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA
NO_ACK = 504  # SocketSender's status when the bot sent no ack in time (Slack then shows the person an error)

Kind = Literal["slash_commands", "interactive", "events_api"]


class SocketModeStandIn(SlackStandIn):
    def __init__(self, *args: Any, app_token: str = APP_TOKEN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_token = app_token
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._ws_port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []  # open ones, oldest first: envelopes go to the newest
        self.connected = threading.Event()
        self._ws_lock = threading.Lock()
        self._send_lock = threading.Lock()  # a frame is written whole: envelopes and pongs come from several threads
        self._waiting: set[str] = set()  # envelopes delivered and not yet given up on: a late ack is dropped
        self._acks: dict[str, dict[str, Any]] = {}  # envelope id -> the ack's payload ({} when it carried none)
        self._acked = threading.Condition()
        self._envelope_ids = itertools.count(1)
        threading.Thread(target=self._accept, name="socket-mode-standin", daemon=True).start()

    def __enter__(self) -> Self:
        self.start()
        return self

    @property
    def connection_count(self) -> int:
        with self._ws_lock:
            return len(self._connections)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._ws_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)  # wakes its reader, which a close alone would not
                    connection.close()
        super().stop()

    def deliver(
        self, kind: Kind, payload: dict[str, Any], timeout: float = 10.0, retry_attempt: int = 0
    ) -> dict[str, Any] | None:
        """Send Slack's request ``payload`` to the bot in an envelope of ``kind`` (the slash command's fields, an
        interaction's payload, an ``event_callback`` body) and wait for the bot's ack: its payload (``{}`` when it
        carried none), or None when no ack came within ``timeout`` seconds. Safe from several threads at once."""
        if not self.connected.wait(timeout):
            raise ConnectionError("the bot has no socket open")
        envelope_id = f"standin-{next(self._envelope_ids)}-{time.monotonic_ns()}"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            # Slack takes an answer in the ack for commands and interactions (a form's errors), never for events.
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":  # only events are retried by Slack, so only they say which attempt this is
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": "timeout" if retry_attempt else ""}
        with self._ws_lock:
            if not self._connections:
                raise ConnectionError("the bot's socket is closed")
            connection = self._connections[-1]
        with self._acked:
            self._waiting.add(envelope_id)
        deadline = time.monotonic() + timeout
        try:
            with self._send_lock:
                connection.sendall(_frame(_TEXT, json.dumps(envelope).encode()))
            with self._acked:
                while envelope_id not in self._acks:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._acked.wait(remaining)
                return self._acks.pop(envelope_id)
        finally:
            with self._acked:
                self._waiting.discard(envelope_id)

    def _dispatch(self, method: str, args: dict[str, Any], token: str) -> tuple[int, dict, dict[str, str], float]:
        if method != "apps.connections.open":
            return super()._dispatch(method, args, token)
        if token != self.app_token:  # Slack takes only the app-level token here, never the bot token
            self._record(ApiCall(method, args, time.monotonic(), error="invalid_auth"))
            return 200, {"ok": False, "error": "invalid_auth"}, {}, 0.0
        self._record(ApiCall(method, args, time.monotonic()))
        return 200, {"ok": True, "url": f"ws://127.0.0.1:{self._ws_port}/link/?ticket=standin"}, {}, 0.0

    # -- the WebSocket side --------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(connection,), name="socket-mode-conn", daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                request += chunk
            headers = dict(line.split(":", 1) for line in request.decode("latin-1").split("\r\n")[1:] if ":" in line)
            key = next((v.strip() for k, v in headers.items() if k.strip().lower() == "sec-websocket-key"), "")
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
            connection.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            with self._ws_lock:
                self._connections.append(connection)
            hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0BREAKGLASS"}}
            with self._send_lock:
                connection.sendall(_frame(_TEXT, json.dumps(hello).encode()))
            self.connected.set()
            try:
                with contextlib.suppress(OSError, ConnectionError):
                    self._answer(connection)
            finally:
                with self._ws_lock:
                    self._connections.remove(connection)
                    if not self._connections:
                        self.connected.clear()

    def _answer(self, connection: socket.socket) -> None:
        while True:
            head = _read(connection, 2)
            if head is None:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", _read(connection, 2) or b"\0\0")[0]
            elif length == 127:
                length = struct.unpack("!Q", _read(connection, 8) or bytes(8))[0]
            mask = _read(connection, 4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = _read(connection, length) if length else b""
            if mask is None or payload is None:
                return
            data = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
            if opcode == _TEXT:
                self._take_ack(data)
            elif opcode == _PING:
                with self._send_lock:
                    connection.sendall(_frame(_PONG, data))
            elif opcode == _CLOSE:
                with self._send_lock:
                    connection.sendall(_frame(_CLOSE, data[:2]))
                return

    def _take_ack(self, data: bytes) -> None:
        """An ack: ``{"envelope_id": ..., "payload": {...}}``, the payload left out when there is nothing to say."""
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
            with self._acked:
                if message["envelope_id"] in self._waiting:
                    self._acks[message["envelope_id"]] = message.get("payload") or {}
                    self._acked.notify_all()


def payload_of(body: str, content_type: str = FORM) -> tuple[Kind, dict[str, Any]]:
    """What Slack puts in a Socket Mode envelope for a request ``slack_requests`` builds for HTTP: an event's JSON
    body; an interaction's ``payload=<json>``, parsed; a slash command's form, as a dict of its fields."""
    if content_type == JSON:
        return "events_api", json.loads(body)
    fields = dict(parse_qsl(body, keep_blank_values=True))
    if set(fields) == {"payload"}:
        return "interactive", json.loads(fields["payload"])
    return "slash_commands", fields


class SocketSender(SlackSender):
    """``SlackSender`` over Socket Mode: each request it would POST is delivered in an envelope instead, and answered
    as an HTTP response would be (200 with the ack's payload as JSON; ``NO_ACK`` when the bot sent none in time). No
    signature: in Socket Mode the connection is the proof."""

    def __init__(self, standin: SocketModeStandIn, timeout: float = 10.0) -> None:
        super().__init__("http://socket-mode.invalid", "", timeout)
        self.standin = standin

    def post(self, body: str, timestamp: int | None = None, content_type: str = FORM) -> requests.Response:
        kind, payload = payload_of(body, content_type)
        acked = self.standin.deliver(kind, payload, self.timeout)
        response = requests.Response()
        response.status_code = NO_ACK if acked is None else 200
        response._content = json.dumps(acked).encode() if acked else b""
        response.headers["Content-Type"] = "application/json"
        response.encoding = "utf-8"
        return response

    def post_raw(self, body: str, headers: dict[str, str]) -> requests.Response:
        raise TypeError("Socket Mode requests carry no signature: test signatures over HTTP")


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _read(connection: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(min(size - len(data), 1 << 16))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
