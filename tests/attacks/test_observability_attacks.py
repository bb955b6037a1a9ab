"""Attacks on what issue 14 added for operators: audit streaming, JSON logs, the database URL's checks.

Each test is an attack that once worked (or one we expected to, kept so it cannot start working): a trail with a
hole or rewritten below a sink's mark must be a failing, alerted sink rather than a silent stall or a silent skip;
seqs are taken in commit order, so the shipper can never pass over an event that commits later; a clear-text webhook
to loopback must not be handed to an HTTP proxy; an event no UDP datagram can carry must not hold back the stream; a
JSON log line must stay one line for any reader's idea of a line; a password with an unencoded ``@`` must not spill
into `breakglass check`'s answer. One is still open (xfail): a receiver that trickles its answer holds a sink.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from bot.clock import ManualClock
from bot.devtools.sink_receivers import HmacReceiver, SyslogReceiver
from bot.logs import JsonFormatter, current_context, log_context
from bot.metrics import DatabaseGauges
from bot.policy import Policy
from bot.policy.sinks import FileSink, SyslogSink, WebhookSink
from bot.services.delivery import Courier
from bot.services.deps import Deps, Tuning
from bot.services.streaming import FAILING, INTERRUPTED, RETRY_MAX, Shipper
from bot.settings import SettingsError, load_settings
from bot.sinks import Sink, SinkDown, build
from bot.store import audit, schema
from bot.store import sinks as cursors
from bot.store.chain import AuditSeal
from bot.store.db import Database
from bot.store.models import AuditChainHead, AuditEvent, DrillRun
from bot.store.probe import database_problems
from bot.store.urls import url_problem
from bot.testing.services import (
    APPROVALS,
    APPROVER,
    AUDIT,
    REQUESTER,
    FixedDirectory,
    RecordingNotifier,
    one_resource_policy,
)

KEY = "attack-audit-key-5e0c1f9a7b3d4c2e8f6a0b1d2c3e4f50"
SECRET = "attack-siem-hmac-key-2b7e4d9c1a3f5e6d"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url, AuditSeal(KEY))
    schema.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def deps(db: Database) -> Deps:
    deps = Deps(
        db=db,
        policy=one_resource_policy("orders-db", "log", {REQUESTER.slack_id: "zoe"}),
        adapters={},
        notifier=RecordingNotifier(),
        directory=FixedDirectory([REQUESTER, APPROVER]),
        clock=ManualClock(),
        tuning=Tuning(instance="replica-a"),
    )
    deps.courier = Courier(deps)
    return deps


def record(deps: Deps, n: int, label: str = "INC") -> None:
    with deps.db.transaction() as session:
        for i in range(n):
            audit.record(session, "requested", at=deps.now(), actor=REQUESTER.slack_id, reason=f"{label}-{i}")


def file_sink(path: Path) -> Sink:
    return build(FileSink(name="file", type="file", path=str(path)), {})


def shipped(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alerts(deps: Deps) -> list[str]:
    """What the audit channel heard about sinks, as "sink:state"."""
    notifier = deps.notifier
    assert isinstance(notifier, RecordingNotifier)
    return [str(detail) for kind, _, detail in notifier.sent if kind == "audit_sink"]


def failing_errors(deps: Deps) -> list[str]:
    with deps.db.transaction() as session:
        details = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == FAILING)).all()
    return [str(detail["error"]) for detail in details]


def turns(deps: Deps, shipper: Shipper, sink: Sink, n: int) -> int:
    """``n`` turns, each once the backoff of the one before has passed; the events confirmed in all."""
    confirmed = 0
    for _ in range(n):
        confirmed += shipper.ship(sink)
        assert isinstance(deps.clock, ManualClock)
        deps.clock.advance(RETRY_MAX)
    return confirmed


def cursor_of(deps: Deps, name: str) -> cursors.Cursor:
    with deps.db.transaction() as session:
        found = cursors.read(session, name)
    assert found is not None
    return found


# -- streaming: holes and rewrites in the trail ------------------------------------------------------------------------


def test_a_hole_in_the_trail_is_alerted_at_once_and_streaming_goes_on_past_it(deps: Deps, tmp_path: Path) -> None:
    """Seqs commit in order, so a missing seq below the newest is gone for good (a row deleted). The shipper used to
    stall there in silence; stopping there with an alert would still let one deleted row blind the SIEM to every later
    event. It alerts at once and goes on past the hole, its alert itself an event the receiver gets."""
    path = tmp_path / "audit.jsonl"
    sink = file_sink(path)
    shipper = Shipper(deps, [sink], alert_attempts=2)
    record(deps, 4)
    assert shipper.ship(sink) == 4
    record(deps, 6)
    with deps.db.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))  # someone with write access hides one

    assert shipper.ship(sink) == 6  # 6..10, and the interruption's own event (11)
    seqs = [e["seq"] for e in shipped(path)]
    assert seqs == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert shipped(path)[-1]["action"] == INTERRUPTED
    assert alerts(deps) == [f"file:{INTERRUPTED}"]
    assert "audit event 5 is missing from the trail" in shipped(path)[-1]["detail"]["error"]
    assert shipper.ship(sink) == 0 and alerts(deps) == [f"file:{INTERRUPTED}"]  # said once


def test_a_trail_rewritten_below_a_sinks_mark_is_alerted_and_sent_again_from_the_start(
    deps: Deps, tmp_path: Path
) -> None:
    """Delete the newest events and wind the head back (without the key): the next seal goes on from the last event
    there, so its evidence (``audit_head_altered``) and the events after it reuse seqs the sink already confirmed.
    The shipper used to skip those; now the receiver is sent the trail again from the start and holds both versions."""
    path = tmp_path / "audit.jsonl"
    sink = file_sink(path)
    shipper = Shipper(deps, [sink], alert_attempts=2)
    record(deps, 10)
    assert shipper.ship(sink) == 10
    with deps.db.transaction() as session:
        eighth = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 8))
        session.execute(delete(AuditEvent).where(AuditEvent.seq > 8))
        session.execute(update(AuditChainHead).values(seq=8, hash=eighth, mac="0" * 64))
    record(deps, 3, label="AFTER")
    with deps.db.transaction() as session:
        rewritten = session.scalar(select(AuditEvent.action).where(AuditEvent.seq == 9))
    assert rewritten == "audit_head_altered"  # the chain's own evidence, at a seq the sink already confirmed

    shipper.ship(sink)
    events = shipped(path)
    assert [e["seq"] for e in events[:10]] == list(range(1, 11))
    again = events[10:]
    assert [e["seq"] for e in again] == list(range(1, len(again) + 1))  # the whole trail again, in order
    assert "audit_head_altered" in [e["action"] for e in again] and again[-1]["action"] == INTERRUPTED
    assert alerts(deps) == [f"file:{INTERRUPTED}"]
    assert cursor_of(deps, "file").last_seq == again[-1]["seq"]


def test_a_transaction_sealed_first_commits_first_so_the_shipper_never_passes_over_it(deps: Deps) -> None:
    """Two transactions commit at once: A has its seq and is still committing, B asks for the next one. B must wait
    for A's commit (the head's lock), so no reader ever sees B's seq without A's, and `after` cannot skip A."""
    record(deps, 3)
    sealed, release = threading.Event(), threading.Event()

    def hold_after_seal(session: Session) -> None:  # registered after the seal's hook, so it runs once A is sealed
        if session.info.get("slow"):
            sealed.set()
            release.wait(10)

    sessions = deps.db._sessions
    event.listen(sessions, "before_commit", hold_after_seal)

    def commit(name: str, slow: bool) -> None:
        with deps.db.transaction() as session:
            session.info["slow"] = slow
            audit.record(session, "requested", at=deps.now(), actor=REQUESTER.slack_id, reason=name)

    try:
        a = threading.Thread(target=commit, args=("A", True))
        a.start()
        assert sealed.wait(10)
        b = threading.Thread(target=commit, args=("B", False))
        b.start()
        b.join(0.3)  # B gets no seq while A holds the head; if it did, it could commit first
        with deps.db.transaction() as session:
            assert cursors.after(session, 3, 100) == []
        release.set()
        a.join(10)
        b.join(10)
    finally:
        release.set()
        event.remove(sessions, "before_commit", hold_after_seal)
    with deps.db.transaction() as session:
        after = cursors.after(session, 3, 100)
    assert [(e["seq"], e["reason"]) for e in after] == [(4, "A"), (5, "B")]


# -- streaming: hostile text, and files that cannot be written ------------------------------------------------------

HOSTILE = 'a\nb\r\nc\u2028d\u2029e\x85f ] "g" \\h \u202eevil\u202c [x@1 y="z"] ' + "w" * 10_000


def test_hostile_text_stays_one_line_per_event_and_one_syslog_frame(deps: Deps, tmp_path: Path) -> None:
    with deps.db.transaction() as session:  # written as a review's words would be: not cleaned at the door
        audit.record(session, "review_written", at=deps.now(), actor=REQUESTER.slack_id, reason=HOSTILE)
    record(deps, 2)
    path = tmp_path / "audit.jsonl"
    sink = file_sink(path)
    assert Shipper(deps, [sink]).ship(sink) == 3
    assert len(path.read_bytes().decode("ascii").splitlines()) == 3
    assert shipped(path)[0]["reason"] == HOSTILE
    with SyslogReceiver("tcp") as receiver:
        config = SyslogSink(name="syslog", type="syslog", host="127.0.0.1", port=receiver.port, protocol="tcp")
        syslog = build(config, {})
        assert Shipper(deps, [syslog]).ship(syslog) == 3
        assert receiver.wait_for_seq(3)
        syslog.close()
    assert receiver.rejected == []
    assert receiver.messages[0].event["reason"] == HOSTILE and receiver.messages[0].msgid == "review_written"


@pytest.mark.parametrize("where", ["/dev/full", "{tmp}/no/such/folder/audit.jsonl", "{tmp}"])
def test_a_file_that_cannot_be_written_is_a_failing_sink_never_a_crash(deps: Deps, tmp_path: Path, where: str) -> None:
    path = Path(where.format(tmp=tmp_path))
    if where == "/dev/full" and not path.exists():
        pytest.skip("no /dev/full here")
    sink = file_sink(path)
    with pytest.raises(SinkDown) as down:
        sink.send([{"seq": 1, "hash": "0" * 64}])
    assert str(path) in str(down.value) and "\n" not in str(down.value)
    record(deps, 2)
    shipper = Shipper(deps, [sink], alert_attempts=2)
    assert turns(deps, shipper, sink, 2) == 0
    assert cursor_of(deps, "file").last_seq == 0 and alerts(deps) == [f"file:{FAILING}"]


# -- streaming: an event too long for any datagram --------------------------------------------------------------------


def test_an_event_no_udp_datagram_can_carry_does_not_hold_back_the_stream(deps: Deps) -> None:
    """A refused policy lists every problem it found: a big policy broken everywhere (a renamed field) makes an
    event longer than any UDP datagram. Sending it failed with EMSGSIZE at every attempt, forever, and every later
    event waited behind it."""
    problems = [f"resources.service-{i:04d}: approverz: unknown key (did you mean approvers?)" for i in range(1500)]
    with deps.db.transaction() as session:
        audit.record(session, "policy_refused", at=deps.now(), version="v2", kept="v1", problems=problems)
    record(deps, 1)
    with SyslogReceiver("udp") as receiver:
        config = SyslogSink(name="syslog", type="syslog", host="127.0.0.1", port=receiver.port, protocol="udp")
        sink = build(config, {})
        assert Shipper(deps, [sink]).ship(sink) == 2
        assert receiver.wait_for_seq(2)
    assert receiver.rejected == []
    refused = receiver.messages[0].event
    assert refused["seq"] == 1 and refused["detail_omitted"] is True and refused["detail"] is None


# -- streaming: a clear-text webhook to loopback ----------------------------------------------------------------------


class _Proxy:
    """A listener that counts the connections an HTTP client hands it as its proxy; it never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_loopback_webhook_is_not_handed_to_an_http_proxy(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    """http:// is allowed only to loopback, so the events stay on this machine. With HTTP_PROXY set (as on many
    corporate hosts) requests used to send them, in clear text, to the proxy, which then connects to *its own*
    loopback: the events crossed the network and went to the wrong machine."""
    proxy = _Proxy()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    record(deps, 3)
    try:
        with HmacReceiver(SECRET) as receiver:
            config = WebhookSink(
                name="siem", type="webhook", url=receiver.url, secret_env="SIEM_KEY", batch=10, timeout=1.0
            )
            sink = build(config, {"SIEM_KEY": SECRET})
            assert Shipper(deps, [sink]).ship(sink) == 3
            assert receiver.seqs() == [1, 2, 3]
    finally:
        proxy.close()
    assert proxy.connections == 0


class _Trickler:
    """An HTTP receiver that answers 200, one byte every ``every`` seconds (about 4 s in all): never idle for as long
    as a read timeout, yet far slower than one."""

    def __init__(self, every: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/audit"
        self.every = every
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            for byte in answer:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(self.every)

    def close(self) -> None:
        self.listener.close()


def test_a_receiver_trickling_its_answer_is_a_failure_within_the_sinks_timeout() -> None:
    trickler = _Trickler(every=0.1)
    config = WebhookSink(name="siem", type="webhook", url=trickler.url, secret_env="SIEM_KEY", timeout=0.5)
    sink = build(config, {"SIEM_KEY": SECRET})
    event = {"seq": 1, "hash": "0" * 64, "at": "2026-01-01T00:00:00.000000Z"}
    started = time.monotonic()
    try:
        with pytest.raises(SinkDown):
            sink.send([event])
    finally:
        took = time.monotonic() - started
        trickler.close()
        sink.close()
    assert took < 1.5


# -- metrics -----------------------------------------------------------------------------------------------------------


def test_a_drill_the_policy_no_longer_names_leaves_the_page(deps: Deps) -> None:
    """Drill series are read from the drills' rows, which stay: a retired resource's last pass used to stay on the
    page forever, ever older, and the README's stale-drill rule fired for it with nothing left to drill."""
    entry = {"adapter": "log", "approvers": [APPROVER.slack_id]}
    deps.policy = Policy.model_validate(
        {
            "channels": {"approvals": APPROVALS, "audit": AUDIT},
            "resources": {"orders-db": entry},
            "drills": [{"resource": "orders-db", "every": "7d", "principal": "drill_bot"}],
        }
    )
    now = deps.now()
    with deps.db.transaction() as session:
        for label in ("orders-db", "retired-db"):
            session.add(
                DrillRun(
                    resource=label,
                    label=label,
                    started_at=now - timedelta(days=30),
                    finished_at=now - timedelta(days=30),
                    passed=True,
                    steps=[],
                    trigger="schedule",
                    actor="system",
                )
            )
    families = {family.name: family for family in DatabaseGauges(deps).collect()}
    drills = families["breakglass_drill_last_success_timestamp"]
    assert [sample.labels for sample in drills.samples] == [{"resource": "orders-db"}]


# -- logs -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x1c"])
def test_a_json_log_line_stays_one_line_for_every_reader(separator: str) -> None:
    """json.dumps escapes only C0 controls; Python's splitlines (and JavaScript before ES2019) also end a line at
    U+2028, U+2029 and NEL. A reason or a display name carrying one split a log record in two."""
    record = logging.LogRecord("breakglass", logging.INFO, __file__, 1, "reason %s", (f"a{separator}b",), None)
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert json.loads(line)["message"] == f"reason a{separator}b"


def test_a_requests_log_context_does_not_follow_the_thread_to_the_next_request() -> None:
    def failing_request() -> None:
        with log_context(request_id=7, resource="orders-db", actor="U0MALLORY"):
            raise RuntimeError("the listener failed")

    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread, reused, as a web server's worker is
        with pytest.raises(RuntimeError):
            pool.submit(failing_request).result()
        assert pool.submit(current_context).result() == {}


# -- configuration -----------------------------------------------------------------------------------------------------

# An '@' a user forgot to percent-encode: SQLAlchemy takes "p" as the password and the rest as part of the host, so
# the redactor knows only "p" (too short to redact) while the driver quotes the host in its error.
PASSWORD_TAIL = "ssw0rd-4be1d7c93a"
AT_URLS = [
    f"postgresql://breakglass:p@{PASSWORD_TAIL}@127.0.0.1:9/bg",
    f"mysql://breakglass:p@{PASSWORD_TAIL}@127.0.0.1:9/bg",
]


@pytest.mark.parametrize("url", AT_URLS)
def test_a_password_with_an_unencoded_at_sign_is_refused_without_quoting_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = url_problem(url)
    assert problem is not None and "%40" in problem and PASSWORD_TAIL not in problem
    found = database_problems(url, auto_migrate=True, within=5.0)  # what `breakglass check` prints
    assert found and all(PASSWORD_TAIL not in line for line in found), found
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SettingsError) as refused:
        load_settings(env_file=None)
    assert str(refused.value).startswith("DATABASE_URL: ") and PASSWORD_TAIL not in str(refused.value)


def test_an_encoded_at_sign_and_percent_in_a_password_still_parse() -> None:
    assert url_problem("postgresql://breakglass:p%40ss%25word@127.0.0.1:9/bg") is None
