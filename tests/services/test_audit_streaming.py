"""Audit streaming against real receivers on loopback: an HTTP server that checks the HMAC, UDP and TCP syslog
listeners that parse RFC 5424 (TCP: octet counting), and a real file. Events are written through the store's own
audit recording and sealed into the chain; the shipper is ticked directly, with a clock that moves only when told.

Each sink goes through an outage: the receiver down, events piling up, the receiver back, and then every event
arrives, in order, none lost, a repeat allowed only at the boundary of the batch that was not confirmed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import select

from bot.cli.audit import exported
from bot.clock import ManualClock
from bot.devtools.sink_receivers import HmacReceiver, SyslogReceiver
from bot.policy.sinks import FileSink, SyslogSink, WebhookSink
from bot.services.delivery import Courier
from bot.services.deps import Deps, Tuning
from bot.services.streaming import FAILING, RECOVERED, RETRY_MAX, Shipper, retry_wait
from bot.sinks import Sink, build
from bot.sinks.syslog import escape_param
from bot.store import audit, schema
from bot.store import sinks as cursors
from bot.store.chain import AuditSeal
from bot.store.db import Database
from bot.store.models import AuditEvent
from bot.testing.services import APPROVER, REQUESTER, FixedDirectory, RecordingNotifier, one_resource_policy

KEY = "test-audit-key-3f9a1c7e5b2d4816e0c97f3b5a1d2e84"
SECRET = "siem-hmac-key-7d1e9b3a5c2f4e6a8b0d"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url, AuditSeal(KEY))
    schema.upgrade(database.engine)
    yield database
    database.dispose()


def make_deps(db: Database, clock: ManualClock, instance: str = "replica-a") -> Deps:
    policy = one_resource_policy("orders-db", "log", {REQUESTER.slack_id: "zoe"})
    deps = Deps(
        db=db,
        policy=policy,
        adapters={},
        notifier=RecordingNotifier(),
        directory=FixedDirectory([REQUESTER, APPROVER]),
        clock=clock,
        tuning=Tuning(instance=instance),
    )
    deps.courier = Courier(deps)  # the audit channel's messages go out as soon as they are owed
    return deps


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def deps(db: Database, clock: ManualClock) -> Deps:
    return make_deps(db, clock)


def record(deps: Deps, n: int, start: int = 0) -> None:
    """``n`` audit events, a few per transaction, as the bot's changes write them."""
    for first in range(start, start + n, 7):
        with deps.db.transaction() as session:
            for i in range(first, min(first + 7, start + n)):
                audit.record(session, "requested", at=deps.now(), actor=REQUESTER.slack_id, reason=f'INC-{i} "]\\')


def last_seq(deps: Deps) -> int:
    with deps.db.transaction() as session:
        return int(session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0)


def advance(deps: Deps, delta: timedelta) -> None:
    assert isinstance(deps.clock, ManualClock)
    deps.clock.advance(delta)


def sent(deps: Deps) -> list[str]:
    notifier = deps.notifier
    assert isinstance(notifier, RecordingNotifier)
    return [detail for kind, _, detail in notifier.sent if kind == "audit_sink"]


def assert_all_in_order(seqs: list[int], last: int, boundary_repeats: int = 1) -> None:
    """Every seq 1..last arrived; anything seen twice was re-sent from the cursor, so it comes right after a
    restart of the sequence (the boundary), never out of order within a run."""
    assert sorted(set(seqs)) == list(range(1, last + 1))
    restarts = [i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
    assert len(restarts) <= boundary_repeats, seqs
    for i in restarts:
        assert seqs[i] <= seqs[i - 1], "a gap: an event was skipped"


def outage(deps: Deps, shipper: Shipper, sink: Sink, attempts: int) -> None:
    """``attempts`` turns while the receiver is down, each once its backoff has passed; every one fails."""
    for _ in range(attempts):
        assert shipper.ship(sink) == 0
        advance(deps, RETRY_MAX)


# -- webhook ---------------------------------------------------------------------------------------------------------


def webhook(receiver: HmacReceiver, secret: str = SECRET, batch: int = 100) -> Sink:
    config = WebhookSink(name="siem", type="webhook", url=receiver.url, secret_env="SIEM_KEY", batch=batch)
    return build(config, {"SIEM_KEY": secret})


def test_webhook_sends_signed_batches_in_chain_order_shaped_as_the_export(deps: Deps) -> None:
    record(deps, 230)
    with HmacReceiver(SECRET) as receiver:
        sink = webhook(receiver)
        assert Shipper(deps, [sink]).tick() == {"siem": 230}

    assert receiver.seqs() == list(range(1, 231))
    assert receiver.posts == 3 and receiver.rejected == []  # batches of 100, each signature checked
    with deps.db.transaction() as session:
        first = session.execute(select(AuditEvent.__table__).where(AuditEvent.seq == 1)).one()
    assert receiver.events[0] == exported(first._mapping) | {"activity": None}
    with deps.db.transaction() as session:
        cursor = cursors.read(session, "siem")
    assert cursor is not None and cursor.last_seq == 230 and cursor.last_hash == receiver.events[-1]["hash"]


def test_a_receiver_that_refuses_the_signature_confirms_nothing(deps: Deps) -> None:
    record(deps, 5)
    with HmacReceiver(SECRET) as receiver:
        shipper = Shipper(deps, [webhook(receiver, secret="not-the-receivers-key-at-all")])
        assert shipper.tick() == {"siem": 0}
    assert receiver.rejected == ["bad signature"] and receiver.events == []
    with deps.db.transaction() as session:
        cursor = cursors.read(session, "siem")
    assert cursor is not None and cursor.last_seq == 0 and cursor.failures == 1


def test_webhook_outage_piles_up_alerts_once_and_delivers_everything_when_back(deps: Deps) -> None:
    record(deps, 40)
    receiver = HmacReceiver(SECRET).start()
    sink = webhook(receiver, batch=25)
    shipper = Shipper(deps, [sink], alert_attempts=4)
    assert shipper.tick() == {"siem": 40}
    receiver.stop()  # the collector goes away

    record(deps, 30, start=40)
    outage(deps, shipper, sink, attempts=6)
    assert sent(deps) == ["siem:audit_sink_failing"]  # once, at the fourth failure, not at every retry
    with deps.db.transaction() as session:
        cursor = cursors.read(session, "siem")
    assert cursor is not None and cursor.last_seq == 40 and cursor.failures == 6 and cursor.alerted_at is not None

    receiver.start()  # back, on the same address
    receiver.fail_next(1, status=500)  # and answers its first POST with an error: that batch is sent again
    assert shipper.ship(sink) == 0
    advance(deps, retry_wait(7))
    shipper.tick()
    shipper.tick()
    receiver.stop()

    last = last_seq(deps)
    assert last == 40 + 30 + 2  # the events, plus audit_sink_failing and audit_sink_recovered
    assert_all_in_order(receiver.seqs(), last, boundary_repeats=0)  # a 500 is not a confirmation: nothing kept twice
    assert sent(deps) == ["siem:audit_sink_failing", "siem:audit_sink_recovered"]
    actions = [event["action"] for event in receiver.events]
    assert actions[70] == FAILING and actions[-1] == RECOVERED  # the trail records the outage, and ships it too
    failing = receiver.events[70]["detail"]
    assert failing["sink"] == "siem" and failing["failures"] == 4 and failing["waiting"] == 30


def test_a_failing_sink_is_alerted_after_five_minutes_even_with_few_attempts(deps: Deps) -> None:
    record(deps, 3)
    receiver = HmacReceiver(SECRET)  # never started: nothing listens there
    sink = webhook(receiver)
    shipper = Shipper(deps, [sink])
    assert shipper.ship(sink) == 0
    advance(deps, timedelta(minutes=4, seconds=59))
    assert shipper.ship(sink) == 0
    assert sent(deps) == []
    advance(deps, timedelta(minutes=1))
    assert shipper.ship(sink) == 0
    assert sent(deps) == ["siem:audit_sink_failing"]


# -- syslog ----------------------------------------------------------------------------------------------------------


def syslog(receiver: SyslogReceiver) -> Sink:
    config = SyslogSink(name="syslog", type="syslog", host="127.0.0.1", port=receiver.port, protocol=receiver.protocol)
    return build(config, {})


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_frames_are_rfc5424_with_seq_and_hash(deps: Deps, protocol: Literal["udp", "tcp"]) -> None:
    record(deps, 12)
    with SyslogReceiver(protocol) as receiver:
        assert Shipper(deps, [syslog(receiver)]).tick() == {"syslog": 12}
        assert receiver.wait_for_seq(12)

    assert receiver.rejected == []
    assert receiver.seqs() == list(range(1, 13))
    for message in receiver.messages:
        assert message.pri == 4 * 8 + 6  # auth.info
        assert (message.app, message.msgid, message.sd_id) == ("breakglass", "requested", "breakglass@32473")
        assert message.params == {"seq": str(message.event["seq"]), "hash": message.event["hash"]}
        assert message.timestamp == message.event["at"]
    assert receiver.messages[0].event["reason"] == 'INC-0 "]\\'


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_syslog_outage_then_everything_in_order(deps: Deps, protocol: Literal["udp", "tcp"]) -> None:
    record(deps, 10)
    receiver = SyslogReceiver(protocol).start()
    sink = syslog(receiver)
    shipper = Shipper(deps, [sink])
    assert shipper.tick() == {"syslog": 10}
    assert receiver.wait_for_seq(10)
    receiver.stop()

    record(deps, 1, start=10)  # a batch of one: its datagram alone must show the receiver is gone
    outage(deps, shipper, sink, attempts=1)
    record(deps, 14, start=11)
    outage(deps, shipper, sink, attempts=2)
    with deps.db.transaction() as session:
        cursor = cursors.read(session, "syslog")
    assert cursor is not None and cursor.last_seq == 10 and cursor.failures == 3

    receiver.start()
    advance(deps, retry_wait(4))
    assert shipper.tick() == {"syslog": 15}
    assert receiver.wait_for_seq(25)
    receiver.stop()
    assert receiver.rejected == []
    assert_all_in_order(receiver.seqs(), 25)


def test_sd_param_values_are_escaped_as_rfc5424_asks() -> None:
    assert escape_param('a"b\\c]d') == 'a\\"b\\\\c\\]d'


# -- file ------------------------------------------------------------------------------------------------------------


def file_sink(path: Path) -> Sink:
    return build(FileSink(name="file", type="file", path=str(path)), {})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_file_outage_rotation_and_a_torn_line(deps: Deps, tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    path = directory / "audit.jsonl"
    sink = file_sink(path)
    shipper = Shipper(deps, [sink])
    record(deps, 8)
    assert shipper.tick() == {"file": 8}

    path.rename(directory / "audit.jsonl.1")  # logrotate moves it away
    with path.open("w") as handle:
        handle.write('{"seq": 9, "torn')  # a write cut short by a crash, before the cursor moved
    record(deps, 4, start=8)
    assert shipper.tick() == {"file": 4}

    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()  # the volume is gone
    record(deps, 5, start=12)
    outage(deps, shipper, sink, attempts=2)
    directory.mkdir()
    advance(deps, retry_wait(3))
    assert shipper.tick() == {"file": 5}

    raw = path.read_text()
    assert raw.endswith("\n") and os.path.getsize(path) > 0
    assert [event["seq"] for event in lines(path)] == list(range(13, 18))


def test_file_lines_are_all_complete_after_a_torn_write(deps: Deps, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"seq": 1, "torn')
    record(deps, 3)
    assert Shipper(deps, [file_sink(path)]).tick() == {"file": 3}
    text = path.read_text().splitlines()
    assert text[0] == '{"seq": 1, "torn'  # left as it was, on a line of its own
    assert [json.loads(line)["seq"] for line in text[1:]] == [1, 2, 3]


# -- cursor, restart, replicas ---------------------------------------------------------------------------------------


def test_a_restart_resumes_from_the_confirmed_cursor(db: Database, clock: ManualClock) -> None:
    first = make_deps(db, clock, "host:100:aaaaaa")
    record(first, 20)
    with HmacReceiver(SECRET) as receiver:
        before = Shipper(first, [webhook(receiver, batch=8)])
        assert before.tick() == {"siem": 20}
        before.stop()  # a clean stop hands the hold back

        restarted = make_deps(db, clock, "host:200:bbbbbb")  # a new process: another name
        record(restarted, 9, start=20)
        assert Shipper(restarted, [webhook(receiver, batch=8)]).tick() == {"siem": 9}
    assert receiver.seqs() == list(range(1, 30))  # nothing sent twice, nothing missed


def test_one_replica_ships_a_sink_and_another_takes_over_when_its_hold_lapses(db: Database, clock: ManualClock) -> None:
    a, b = make_deps(db, clock, "replica-a"), make_deps(db, clock, "replica-b")
    record(a, 6)
    with HmacReceiver(SECRET) as receiver:
        ship_a, ship_b = Shipper(a, [webhook(receiver)]), Shipper(b, [webhook(receiver)])
        assert ship_a.tick() == {"siem": 6}
        record(a, 3, start=6)
        assert ship_b.tick() == {"siem": 0}  # a holds it
        clock.advance(timedelta(seconds=31))  # a stopped renewing (a crash without its heartbeat row)
        assert ship_b.tick() == {"siem": 3}
        with db.transaction() as session:  # a's late move from where it was cannot take the cursor back
            assert not cursors.advance(session, "siem", "replica-a", 6, 9, "0" * 64, clock.now(), clock.now())
            assert not cursors.advance(session, "siem", "replica-b", 9, 5, "0" * 64, clock.now(), clock.now())
    assert receiver.seqs() == list(range(1, 10))


def test_replicas_shipping_at_the_same_moment_send_each_event_once(db: Database, clock: ManualClock) -> None:
    replicas = [make_deps(db, clock, f"replica-{n}") for n in range(3)]
    record(replicas[0], 60)
    with HmacReceiver(SECRET) as receiver:
        shippers = [Shipper(deps, [webhook(receiver, batch=7)]) for deps in replicas]
        with ThreadPoolExecutor(len(shippers)) as pool:
            for turn in range(3):
                turns = list(pool.map(lambda shipper: shipper.tick()["siem"], shippers))
                assert sorted(turns)[:-1] == [0, 0]  # one of them ships; the others see its hold
                record(replicas[0], 5, start=60 + 5 * turn)  # shipped at the next turn
    assert receiver.seqs() == list(range(1, 71))  # the last turn's five wait for the one after
