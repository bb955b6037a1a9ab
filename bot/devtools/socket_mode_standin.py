"""Slack's Socket Mode, stood in for on loopback: the Web API stand-in answers ``apps.connections.open`` for the app
token with the address of a WebSocket endpoint here, which takes the bot's connection, says hello as Slack does and
answers its pings. Enough for `breakglass serve` to run in Socket Mode under a test; it delivers no events.

The WebSocket side is the least of RFC 6455 the SDK's built-in client uses: the handshake, unmasked text frames
out, masked frames in (ping, pong, close).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from typing import Any, Self

from bot.devtools.slack_standin import ApiCall, SlackStandIn

APP_TOKEN = "xapp-1-A0BREAKGLASS-1029384756-5f0c9a7e3b2d4816e0c97f3b5a1d2e84"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed key suffix
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


class SocketModeStandIn(SlackStandIn):
    def __init__(self, *args: Any, app_token: str = APP_TOKEN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_token = app_token
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._ws_port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self.connected = threading.Event()
        self._ws_lock = threading.Lock()
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
                    connection.close()
        super().stop()

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
            connection.sendall(_frame(_TEXT, json.dumps(hello).encode()))
            self.connected.set()
            with contextlib.suppress(OSError, ConnectionError):
                self._answer(connection)

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
            if opcode == _PING:
                connection.sendall(_frame(_PONG, data))
            elif opcode == _CLOSE:
                connection.sendall(_frame(_CLOSE, data[:2]))
                return


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
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
