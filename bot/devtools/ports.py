"""A free loopback port for a server that a test starts in another process, which binds it a moment later.

The kernel hands out port 0 from its ephemeral range, which every outgoing connection and every server bound to
port 0 (the stand-ins, the webhook receiver) draws from too. On a busy machine the gap between probing a port and the
server binding it grows, and one of those may take the port first. So ports are drawn at random from below that
range, where the kernel gives nothing out unasked, and only one that is free right now is returned.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10_000  # above the ports of system services
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
TRIES = 200


def free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to now, outside the range the kernel hands out by itself."""
    low, high = _ephemeral_range()
    candidates = range(LOWEST, low) if low - LOWEST >= 1_000 else range(high + 1, 65_536)
    for _ in range(TRIES):
        port = random.choice(candidates)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: try another
            return port
    raise RuntimeError(f"no free port found in {TRIES} tries between {candidates.start} and {candidates.stop - 1}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default, and close to what other systems use
    return low, high
