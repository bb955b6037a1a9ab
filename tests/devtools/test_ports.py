"""Ports for servers started in another process come from outside the range the kernel hands out by itself."""

from __future__ import annotations

import socket

import pytest

from bot.devtools import ports


def test_a_free_port_is_outside_the_ephemeral_range_and_can_be_listened_on() -> None:
    low, high = ports._ephemeral_range()
    for _ in range(20):
        port = ports.free_port()
        assert not low <= port <= high and port >= ports.LOWEST
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()


def test_a_taken_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        only = taken.getsockname()[1]
        monkeypatch.setattr(ports, "TRIES", 3)
        monkeypatch.setattr(ports.random, "choice", lambda candidates: only)
        with pytest.raises(RuntimeError, match="no free port"):
            ports.free_port()
