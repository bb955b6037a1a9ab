"""The syslog sink: each event one RFC 5424 message, over UDP or TCP.

    <PRI>1 TIMESTAMP HOSTNAME breakglass - ACTION [breakglass@32473 seq="…" hash="…"] {the event as JSON}

``PRI`` is the facility's number times 8 plus 6 (informational); ``TIMESTAMP`` is the event's own time (UTC, to the
microsecond); ``MSGID`` is its action; the structured data names its ``seq`` and ``hash`` (SD-PARAM values escaped as
RFC 5424 section 6.3.3 asks: ``"``, ``\\`` and ``]``); ``MSG`` is the event as `breakglass audit export` writes it
(ASCII JSON, so no BOM). 32473 is the private enterprise number RFC 5612 sets aside for documentation.

UDP (RFC 5426): one datagram per event, on a connected socket. UDP has no acknowledgement, so "sent" is the
confirmation and delivery is best effort: a receiver that is down is noticed only by the ICMP "port unreachable" its
host sends back (checked after every datagram, so a batch in which it shows is sent again), and not at all when
the host itself is gone or a firewall drops the datagrams. An event too long for one datagram is sent without its
``activity`` list (marked ``"activity_omitted": true``; the export has it, and the event's hash never covered it);
one still too long (a refused policy's every problem) without its ``detail`` too (``"detail_omitted": true``; the
export has it), since an event no datagram can carry would hold back every event after it.

TCP (RFC 6587): octet-counted frames (``LENGTH SP MESSAGE``) on one connection kept open between batches; a batch is
confirmed once it is written and flushed into the connection. A connection the receiver closed is noticed before
writing, and a new one made. Bytes still in the kernel's buffers when the receiver's host dies can be lost: use the
webhook sink where each batch must be acknowledged.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
from collections.abc import Sequence
from typing import Any

from bot.policy.sinks import FACILITIES, SyslogSink
from bot.sinks.base import SinkDown

ENTERPRISE = 32473
INFORMATIONAL = 6
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4


def escape_param(value: str) -> str:
    """An SD-PARAM value as RFC 5424 wants it: backslash before '"', '\\' and ']'."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str | None, longest: int) -> str:
    """A header field: printable US-ASCII without spaces, cut to its longest, or '-' (RFC 5424 NILVALUE)."""
    cleaned = "".join(c for c in (value or "") if 33 <= ord(c) <= 126)[:longest]
    return cleaned or "-"


def frame(event: dict[str, Any], facility: int, hostname: str) -> bytes:
    """One event as an RFC 5424 message."""
    pri = facility * 8 + INFORMATIONAL
    structured = f'[breakglass@{ENTERPRISE} seq="{event["seq"]}" hash="{escape_param(str(event["hash"]))}"]'
    body = json.dumps(event, ensure_ascii=True, separators=(",", ":"))
    header = f"<{pri}>1 {event['at']} {hostname} breakglass - {_header_field(event['action'], 32)}"
    return f"{header} {structured} {body}".encode("ascii")


class SyslogTransport:
    kind = "syslog"
    batch = 200

    def __init__(self, config: SyslogSink) -> None:
        self.name = config.name
        self.host = config.host
        self.port = config.port
        self.protocol = config.protocol
        self.timeout = config.timeout
        self.facility = FACILITIES[config.facility]
        self.hostname = _header_field(socket.gethostname(), 255)
        self._socket: socket.socket | None = None

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            if self.protocol == "udp":
                self._send_udp(events)
            else:
                self._send_tcp(events)
        except OSError as error:
            self.close()
            why = errno.errorcode.get(error.errno or 0) or type(error).__name__
            raise SinkDown(f"{self.protocol} {self.host}:{self.port}: {why}") from None

    def _connected(self, kind: socket.SocketKind) -> socket.socket:
        if self._socket is not None and kind == socket.SOCK_STREAM and _closed_by_peer(self._socket):
            self.close()
        if self._socket is None:
            address = socket.getaddrinfo(self.host, self.port, type=kind)[0]
            connection = socket.socket(address[0], kind)
            connection.settimeout(self.timeout)
            try:
                connection.connect(address[4])
            except OSError:
                connection.close()
                raise
            self._socket = connection
        return self._socket

    def _send_udp(self, events: Sequence[dict[str, Any]]) -> None:
        connection = self._connected(socket.SOCK_DGRAM)
        for event in events:
            message = frame(event, self.facility, self.hostname)
            if len(message) > MAX_DATAGRAM:
                event = {**event, "activity": None, "activity_omitted": True}
                message = frame(event, self.facility, self.hostname)
            if len(message) > MAX_DATAGRAM:  # no datagram could ever carry it: it would hold back every later event
                event = {**event, "detail": None, "detail_omitted": True}
                message = frame(event, self.facility, self.hostname)
            connection.send(message)
            # A port with nothing behind it answers with ICMP; on a connected socket that shows here.
            pending = connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if pending:
                raise OSError(pending, os.strerror(pending))

    def _send_tcp(self, events: Sequence[dict[str, Any]]) -> None:
        connection = self._connected(socket.SOCK_STREAM)
        frames = []
        for event in events:
            message = frame(event, self.facility, self.hostname)
            frames.append(f"{len(message)} ".encode("ascii") + message)
        connection.sendall(b"".join(frames))

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


def _closed_by_peer(connection: socket.socket) -> bool:
    """Whether the receiver closed the connection (or reset it): a write would then vanish, not fail."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
