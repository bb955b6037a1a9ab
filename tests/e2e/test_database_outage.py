"""The database goes away and comes back: the bot keeps running, says so, and catches up.

A private PostgreSQL cluster on a high loopback port is stopped under the real bot (as a crash or an outage of the
server would) and started again; the bot's clock moves through the outage instead of the test sleeping through it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bot.devtools.local_bot import SIGNING_SECRET, LocalBot
from bot.devtools.slack_requests import block_action, signed_headers, slash_command
from bot.devtools.webhook_receiver import WebhookReceiver
from bot.domain.states import Status
from bot.policy import Policy
from bot.slack.ids import ActionId
from bot.slack.replies import DATABASE_LOST_MIDWAY, DATABASE_UNREACHABLE
from bot.store import deliveries
from bot.store.chain import AuditSeal
from bot.store.db import make_engine
from bot.store.models import Request
from bot.store.verify import verify
from tests.adapters.pg_cluster import Cluster, find_bindir, running_cluster
from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.helpers import ALICE, BOB, view

# What Slack allows for an answer. Every HTTP call of the test gives up after it, so a hang fails the test.
SLACK_PATIENCE = 3.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("initdb not found: CI needs the PostgreSQL server binaries", pytrace=False)
        pytest.skip("PostgreSQL server binaries (initdb) not found: install postgresql to test a database outage")
    with running_cluster(bindir) as running:
        yield running


@pytest.fixture
def outage_bot(policy: Policy, receiver: WebhookReceiver, cluster: Cluster) -> Iterator[LocalBot]:
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    bot = LocalBot(policy, cluster.url(), environ=environ).start()
    try:
        yield bot
    finally:
        bot.stop()


def health(bot: LocalBot) -> tuple[int, dict[str, object]]:
    response = requests.get(f"{bot.base_url}/healthz", timeout=SLACK_PATIENCE)
    return response.status_code, response.json()


def command(bot: LocalBot, text: str) -> requests.Response:
    body = slash_command(text=text, user_id=BOB, response_url=bot.slack.response_url("outage-command"))
    return requests.post(
        f"{bot.base_url}/slack/events",
        data=body.encode(),
        headers=signed_headers(SIGNING_SECRET, body),
        timeout=SLACK_PATIENCE,
    )


def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for a background thread's step (a lane's revoke); the bot's clock is not involved."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.02)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


def chain_is_whole(bot: LocalBot, cluster: Cluster) -> None:
    engine = make_engine(cluster.url())
    try:
        verdict = verify(engine, AuditSeal(bot.audit_key))
    finally:
        engine.dispose()
    assert verdict.ok, verdict.line()


def test_the_bot_rides_out_a_database_outage_and_revokes_what_fell_due(
    outage_bot: LocalBot, cluster: Cluster, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    bot = outage_bot
    bot.command(BOB, "orders-db 30m INC-7 checkout failing")
    bot.click(ALICE, ActionId.APPROVE, 1)
    assert view(bot, 1).status is Status.ACTIVE
    assert health(bot) == (200, {"ok": True, "database": "up", "slack": "up"})

    cluster.stop()
    caplog.set_level(logging.WARNING)
    for _ in range(3):  # repeated failures of one kind must not each log a line
        assert health(bot) == (503, {"ok": False, "database": "down", "slack": "up"})

    typed = command(bot, "orders-db 30m INC-8 still failing")
    assert typed.status_code == 200
    assert typed.json() == {"response_type": "ephemeral", "text": DATABASE_UNREACHABLE}

    # A click's HTTP answer is shown to nobody: the person hears it through the click's response_url.
    click = block_action(
        ActionId.REVOKE.value,
        "1",
        BOB,
        "C0APPROVALS",
        "1700000000.000100",
        response_url=bot.slack.response_url("outage-click"),
    )
    clicked = requests.post(
        f"{bot.base_url}/slack/events",
        data=click.encode(),
        headers=signed_headers(SIGNING_SECRET, click),
        timeout=SLACK_PATIENCE,
    )
    assert clicked.status_code == 200
    [told] = bot.slack.wait_for(lambda s: s.responses("outage-click"), timeout=SLACK_PATIENCE)
    assert told["text"] == DATABASE_UNREACHABLE and told["response_type"] == "ephemeral"

    bot.clock.advance(timedelta(minutes=31))  # the grant expires while the database is away
    with pytest.raises(OperationalError):  # the scheduler's job logs it in one line and tries again
        bot.sweep()
    assert receiver.events("revoke") == []

    failing = [
        r.getMessage().split(" failed: ")[0] for r in caplog.records if "database is unreachable" in r.getMessage()
    ]
    assert {"the health check", "a Slack request"} <= set(failing)
    assert len(failing) == len(set(failing)), failing  # one line per kind, however often it failed
    assert not tracebacks(caplog), "a traceback was logged for an unreachable database"

    cluster.start()
    assert health(bot) == (200, {"ok": True, "database": "up", "slack": "up"})
    assert any("reachable again" in r.getMessage() for r in caplog.records)

    report = bot.sweep()  # the first sweep after the database returns
    assert report.revoked == 1
    [revoke] = receiver.events("revoke")
    assert revoke.valid and revoke.body["grant_id"] == view(bot, 1).uid
    assert view(bot, 1).status is Status.EXPIRED

    # Nothing the outage touched was half-written: the refused command filed no request, the click revoked
    # nothing, and the audit chain is whole.
    assert "is with the approvers" in bot.command(BOB, "orders-db 30m INC-9 after the outage").text
    assert bot.runtime is not None
    with bot.runtime.deps.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == 2
    chain_is_whole(bot, cluster)


def test_a_revoke_the_backend_did_while_the_database_went_away_is_sent_again_when_it_returns(
    outage_bot: LocalBot, cluster: Cluster, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    bot = outage_bot
    assert bot.runtime is not None
    bot.command(BOB, "orders-db 30m INC-7 checkout failing")
    bot.click(ALICE, ActionId.APPROVE, 1)
    bot.clock.advance(timedelta(minutes=30))
    caplog.set_level(logging.WARNING)
    receiver.hang(1.0)  # holds the revoke's answer while the database goes away under it
    bot.runtime.sweeper(wait=False)  # claims the revoke and hands it to a lane, as the scheduler does
    receiver.wait_for(lambda calls: any(call.event == "revoke" for call in calls))
    cluster.stop()
    receiver.hang(0)

    # The backend revoked, but the bot could not write that down: the claim stays, nothing half-written.
    eventually(lambda: any("recording" in r.getMessage() and "unreachable" in r.getMessage() for r in caplog.records))
    assert not tracebacks(caplog)

    bot.clock.advance(timedelta(minutes=1))  # a minute's outage: longer than the claim's lease
    cluster.start()
    report = bot.sweep()  # the first sweep after the database returns

    assert report.revoked == 1
    revokes = receiver.events("revoke")
    assert len(revokes) == 2 and {call.body["grant_id"] for call in revokes} == {view(bot, 1).uid}  # idempotent
    assert view(bot, 1).status is Status.EXPIRED
    assert not receiver.has_access("bob")
    chain_is_whole(bot, cluster)


def test_a_command_whose_database_goes_away_after_the_ack_hears_so(
    outage_bot: LocalBot, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = deliveries.first_time

    def then_the_database_goes(*args: object) -> bool:
        first = recorded(*args)  # type: ignore[arg-type]
        cluster.stop()  # after the replay check, before the listener's work: the narrowest moment
        return first

    with monkeypatch.context() as patched:
        patched.setattr(deliveries, "first_time", then_the_database_goes)
        reply = outage_bot.command(BOB, "mine")
    cluster.start()

    assert reply.status == 200 and reply.answer == DATABASE_LOST_MIDWAY


class Relay:
    """A TCP relay on loopback in front of the cluster that can go silent: it keeps every connection open and passes
    no bytes either way, as a hung server or a route black-holed under open connections does. Nothing but a time
    limit of the bot's own ends a wait on it."""

    def __init__(self, target: Cluster) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.silent = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def url(self) -> str:
        return self.target.url().replace(f":{self.target.port}/", f":{self.port}/")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection((self.target.host, self.target.port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                while self.silent.is_set():  # held, never passed on: the connection is cut before speaking again
                    time.sleep(0.01)
                sink.sendall(data)

    def cut(self) -> None:
        """Close every connection made so far (those the silence left hanging)."""
        with self._lock:
            held, self._sockets = self._sockets, []
        for sock in held:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_database_that_goes_silent_under_open_connections_is_reported_within_slacks_three_seconds(
    policy: Policy, receiver: WebhookReceiver, cluster: Cluster
) -> None:
    relay = Relay(cluster)
    environ = {"WEBHOOK_URL": receiver.url, "BREAKGLASS_WEBHOOK_SECRET": WEBHOOK_SECRET}
    bot = LocalBot(policy, relay.url(), environ=environ).start()
    try:
        assert health(bot) == (200, {"ok": True, "database": "up", "slack": "up"})  # the pool holds a connection

        relay.silent.set()
        assert health(bot) == (503, {"ok": False, "database": "down", "slack": "up"})
        typed = command(bot, "orders-db 30m INC-8 is the database there")
        assert typed.json() == {"response_type": "ephemeral", "text": DATABASE_UNREACHABLE}

        relay.silent.clear()
        relay.cut()
        assert health(bot) == (200, {"ok": True, "database": "up", "slack": "up"})
    finally:
        bot.stop()
        relay.close()
