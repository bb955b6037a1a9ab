"""The watched session at the service seam: a capturing backend in memory (bot/testing/capturing.py), Deps on SQLite,
a notifier that records, and a clock that moves only when told. The scheduler's job is played by calling
``read_due`` every READ_TICK of manual time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import cli
from bot.clock import ManualClock
from bot.domain.states import Status
from bot.services import activity
from bot.services.activity_notes import ActivityNote, Note
from bot.services.delivery import Courier
from bot.services.deps import Deps
from bot.services.snapshots import RequestView
from bot.settings import VARIABLES
from bot.slack.activity_notices import activity as rendered
from bot.store import activity as kept_activity
from bot.store import queries
from bot.store.models import AuditEvent
from bot.testing.capturing import CapturingAdapter
from bot.testing.services import APPROVALS, AUDIT, RecordingNotifier, Services, services

PRINCIPAL = "zoe"
EVERY = timedelta(seconds=60)
DROP = r"(?i)\b(drop|truncate)\b"


@pytest.fixture
def backend() -> CapturingAdapter:
    return CapturingAdapter(page_size=50)


@pytest.fixture
def bot(tmp_path: Path, backend: CapturingAdapter) -> Iterator[Services]:
    clock = ManualClock()
    running = services(tmp_path, "orders-db", backend, PRINCIPAL, clock, activity_every=EVERY, alert_on=[DROP])
    running.deps.courier = Courier(running.deps)  # messages go out as soon as they are owed, as in the bot
    yield running
    running.close()


def granted(bot: Services) -> RequestView:
    current = bot.approve(bot.ask("2h").id)
    assert current.status is Status.ACTIVE, current.failure
    return current


def tick(bot: Services) -> int:
    """One run of the scheduler's job, READ_TICK after the last."""
    bot.clock.advance(activity.READ_TICK)
    return activity.read_due(bot.deps)


def notes(bot: Services, kind: Note) -> list[tuple[str, str | None, ActivityNote]]:
    return [entry for entry in bot.notifier.activity if entry[2].note is kind]


def events(bot: Services, action: str) -> list[AuditEvent]:
    with bot.deps.db.transaction() as session:
        found = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        session.expunge_all()
        return list(found)


def kept(bot: Services, request_id: int) -> list[str]:
    with bot.deps.db.transaction() as session:
        return [row.action for row in kept_activity.kept(session, request_id)]


def request_row(bot: Services, request_id: int) -> tuple[bool, str | None, int]:
    with bot.deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        return request.watching, request.activity_cursor, request.activity_seen


def test_a_statement_is_in_the_approval_thread_within_activity_every(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    assert backend.calls[:2] == ["grant", "watch"] and request_row(bot, current.id)[0]
    posted_at: dict[str, datetime] = {}
    done_at: dict[str, datetime] = {}
    # Statements at awkward moments: just after a read, just before one, in the middle.
    offsets = [timedelta(seconds=s) for s in (1, 57, 58.5, 90, 119, 150)]
    start = bot.clock.now()
    for step in range(120):
        now = bot.clock.now()
        for index, offset in enumerate(offsets):
            name = f"SELECT {index}"
            if name not in done_at and start + offset <= now:
                backend.do(PRINCIPAL, name, now)
                done_at[name] = now
        tick(bot)
        for _, _, note in notes(bot, Note.DIGEST):
            for line in note.lines:
                posted_at.setdefault(line.action, bot.clock.now())
        if step > 100 and len(posted_at) == len(offsets):
            break
    assert set(posted_at) == set(done_at), "a statement never reached the thread"
    for name, at in done_at.items():
        assert posted_at[name] - at <= EVERY, f"{name} took {posted_at[name] - at} to reach the thread"
    with bot.deps.db.transaction() as session:
        request = queries.get(session, current.id)
        assert request is not None
        thread_ts = request.approval_ts
    channels = {(channel, ts) for channel, ts, _ in notes(bot, Note.DIGEST)}
    assert channels == {(APPROVALS, thread_ts)}, "the digest is not a reply in the approval message's thread"
    # One digest per read that found something, never one per statement.
    assert len(notes(bot, Note.DIGEST)) < len(offsets)


def test_a_busy_grant_is_capped_and_summarised(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    total = activity.ACTIVITY_KEPT + 300
    for n in range(total):
        backend.do(PRINCIPAL, f"UPDATE orders SET n = {n} " + "x" * 400, bot.clock.now())
    for _ in range(int(EVERY / activity.READ_TICK) * 3):
        tick(bot)
    assert request_row(bot, current.id)[2] == total, "every action is counted"
    assert len(kept(bot, current.id)) == activity.ACTIVITY_KEPT, "only the first ACTIVITY_KEPT are kept"
    digests = notes(bot, Note.DIGEST)
    assert sum(note.total for _, _, note in digests) == total
    first = digests[0][2]
    assert len(first.lines) == activity.DIGEST_LINES and first.more == first.total - activity.DIGEST_LINES
    text = rendered(current, first)
    assert f"…and {first.more} more" in text and f"/breakglass review {current.id}" in text
    assert all(len(line) <= 250 for line in text.splitlines()), "a digest line is not cut"
    for event in events(bot, "activity_captured"):
        assert sum(len(line) for line in event.detail["lines"]) <= activity.AUDITED_CHARS + 100


def test_a_flagged_statement_reaches_the_audit_channel_within_the_minute(
    bot: Services, backend: CapturingAdapter
) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    bot.clock.advance(timedelta(seconds=3))
    done = bot.clock.now()
    backend.do(PRINCIPAL, "select * from orders", done)
    backend.do(PRINCIPAL, "DROP TABLE orders; -- <@U0BOSS> <!here>", done)
    while not notes(bot, Note.FLAGGED):
        tick(bot)
        assert bot.clock.now() - done <= timedelta(minutes=1), "no alert within the minute"
    [(channel, thread, alert)] = notes(bot, Note.FLAGGED)
    assert (channel, thread) == (AUDIT, None)
    assert alert.lines[0].flagged == DROP and "DROP TABLE orders" in alert.lines[0].action
    text = rendered(current, alert)
    assert f"#{current.id}" in text and "orders-db" in text and f"<@{current.requester_id}>" in text
    assert PRINCIPAL in text and "DROP TABLE orders" in text
    assert "<@U0BOSS>" not in text and "<!here>" not in text, "a statement formed a mention"
    [flagged] = events(bot, "activity_flagged")
    assert flagged.request_id == current.id and flagged.detail["pattern"] == DROP
    [digest] = [note for _, _, note in notes(bot, Note.DIGEST)]
    assert digest.lines[0].flagged == DROP, "flagged statements come first in the digest"
    assert "⚑" in rendered(current, digest).split("```")[1].splitlines()[1]


def test_one_replica_reads_each_grant(bot: Services, backend: CapturingAdapter, tmp_path: Path) -> None:
    current = granted(bot)
    other = replace(
        bot.deps,
        tuning=replace(bot.deps.tuning, instance="replica-b"),
        notifier=RecordingNotifier(),
        courier=bot.deps.courier,
    )
    assert isinstance(other, Deps) and other.tuning.instance != bot.deps.tuning.instance
    for round_ in range(8):
        for n in range(30):
            backend.do(PRINCIPAL, f"SELECT {round_}, {n}", bot.clock.now())
        bot.clock.advance(EVERY)
        barrier = threading.Barrier(2)
        reads: list[int] = []

        def run(deps: Deps, barrier: threading.Barrier, reads: list[int]) -> None:
            barrier.wait()
            reads.append(activity.read_due(deps))

        threads = [threading.Thread(target=run, args=(deps, barrier, reads)) for deps in (bot.deps, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(reads) == [0, 1], "both replicas read the grant in one period"
    actions = kept(bot, current.id)
    assert len(actions) == len(set(actions)) == 8 * 30, "an action was kept twice or lost"


def test_a_batch_is_stored_once_when_two_reads_overlap(bot: Services, backend: CapturingAdapter) -> None:
    """The read at revoke and a periodic read can start from the same cursor: only the first store wins."""
    current = granted(bot)
    backend.do(PRINCIPAL, "SELECT 1", bot.clock.now())
    _, cursor, seen = request_row(bot, current.id)
    page = backend.activity(*bot.access_of(current.id), since=bot.clock.now() - EVERY, cursor=cursor)
    stored = []
    for _ in range(2):
        with bot.deps.db.transaction() as session:
            stored.append(
                kept_activity.store(
                    session,
                    current.id,
                    cursor_was=cursor,
                    seen_was=seen,
                    cursor=page.cursor,
                    items=page.items,
                    flagged=[None] * len(page.items),
                    kept_at_most=activity.ACTIVITY_KEPT,
                    now=bot.clock.now(),
                )
            )
    assert stored[0] is not None and stored[1] is None
    assert kept(bot, current.id) == ["SELECT 1"]


def test_a_failed_read_loses_nothing_and_is_said_once(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    backend.do(PRINCIPAL, "SELECT 1", bot.clock.now())
    backend.fail_reads = activity.FAILURES_SAID_AT + 2
    _, cursor, _ = request_row(bot, current.id)
    for _ in range(activity.FAILURES_SAID_AT + 2):
        bot.clock.advance(EVERY)
        assert activity.read_due(bot.deps) == 1
        assert request_row(bot, current.id)[1] == cursor, "a failed read moved the cursor"
    assert [e.detail["attempt"] for e in events(bot, "activity_read_failed")] == [1, 2, 3, 4, 5]
    assert len(notes(bot, Note.READ_FAILING)) == 1, "repeated failures must be said once, not every period"
    backend.do(PRINCIPAL, "SELECT 2", bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    assert kept(bot, current.id) == ["SELECT 1", "SELECT 2"]
    assert len(events(bot, "activity_read_recovered")) == 1


def test_a_crash_between_read_and_store_reads_again(
    bot: Services, backend: CapturingAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    for n in range(120):  # more than a page
        backend.do(PRINCIPAL, f"SELECT {n}", bot.clock.now())
    before = request_row(bot, current.id)[1:]

    def killed(*args: object) -> None:
        raise KeyboardInterrupt("the process died after reading, before storing")

    with monkeypatch.context() as patched:
        patched.setattr(activity, "_keep", killed)
        bot.clock.advance(EVERY)
        with pytest.raises(KeyboardInterrupt):
            activity.read_due(bot.deps)
    assert request_row(bot, current.id)[1:] == before and kept(bot, current.id) == []
    bot.clock.advance(EVERY)
    assert activity.read_due(bot.deps) == 1
    assert kept(bot, current.id) == [f"SELECT {n}" for n in range(120)]


def test_the_revoke_reads_last_and_unwatches(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    bot.clock.advance(timedelta(seconds=5))
    backend.do(PRINCIPAL, "DELETE FROM carts", bot.clock.now())  # after the last periodic read
    ended = bot.revoke(current.id)
    assert ended.status is Status.REVOKED
    assert kept(bot, current.id) == ["DELETE FROM carts"]
    assert backend.calls[-2:] == ["activity", "unwatch"] and PRINCIPAL not in backend.watched
    assert request_row(bot, current.id)[0] is False
    [ended_event] = events(bot, "capture_ended")
    assert ended_event.detail["seen"] == 1 and ended_event.detail["kept"] == 1
    revoked = events(bot, "revoked")[0]
    assert revoked.id < events(bot, "activity_captured")[0].id, "the revoke was recorded before the capture's end"


def test_a_failed_unwatch_never_fails_the_revoke(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    backend.fail_unwatch = 1
    assert bot.revoke(current.id).status is Status.REVOKED
    [failed] = events(bot, "capture_failed")
    assert failed.detail["stage"] == "unwatch"
    assert request_row(bot, current.id)[0] is True, "the unwatch is owed until it succeeds"
    bot.clock.advance(EVERY)
    assert activity.read_due(bot.deps) == 1
    assert request_row(bot, current.id)[0] is False and PRINCIPAL not in backend.watched


def test_a_failed_watch_leaves_the_grant_and_is_said(bot: Services, backend: CapturingAdapter) -> None:
    backend.fail_watch = True
    current = granted(bot)
    assert request_row(bot, current.id)[0] is False
    [failed] = events(bot, "capture_failed")
    assert failed.detail["stage"] == "watch" and "audit logging" in failed.detail["error"]
    where = {(channel, thread is not None) for channel, thread, _ in notes(bot, Note.CAPTURE_FAILED)}
    assert where == {(APPROVALS, True), (AUDIT, False)}
    assert activity.read_due(bot.deps) == 0 and "activity" not in backend.calls
    assert bot.revoke(current.id).status is Status.REVOKED and "unwatch" not in backend.calls


def test_the_kept_record_is_vouched_for_by_the_chain(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    for n in range(3):
        backend.do(PRINCIPAL, f"SELECT {n}", bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    [event] = events(bot, "activity_captured")
    with bot.deps.db.transaction() as session:
        rows = kept_activity.batch(session, current.id, event.detail["first_id"], event.detail["last_id"])
        assert kept_activity.batch_hash(kept_activity.row_data(row) for row in rows) == event.detail["sha256"]
        rows[1].action = "SELECT 'something else'"
        session.flush()
        changed = kept_activity.batch(session, current.id, event.detail["first_id"], event.detail["last_id"])
        assert kept_activity.batch_hash(kept_activity.row_data(row) for row in changed) != event.detail["sha256"]
        session.rollback()


def test_the_export_carries_each_batch_with_the_event_that_vouches_for_it(
    bot: Services, backend: CapturingAdapter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    current = granted(bot)
    for n in range(3):
        backend.do(PRINCIPAL, f"SELECT {n}", bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    environ = {
        "DATABASE_URL": bot.deps.db.engine.url.render_as_string(hide_password=False),
        "BREAKGLASS_AUDIT_KEY": "k" * 40,
    }
    result = CliRunner().invoke(cli, ["audit", "export"], env=environ, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    [captured] = [line for line in lines if line["action"] == "activity_captured"]
    assert captured["request_id"] == current.id
    assert [row["action"] for row in captured["activity"]] == ["SELECT 0", "SELECT 1", "SELECT 2"]
    assert kept_activity.batch_hash(captured["activity"]) == captured["detail"]["sha256"]
    assert all(line["activity"] is None for line in lines if line["action"] != "activity_captured")


def test_a_statement_cannot_break_out_of_the_digest(bot: Services, backend: CapturingAdapter) -> None:
    current = granted(bot)
    activity.read_due(bot.deps)
    hostile = "SELECT '```' || '<@U0BOSS>' || '<!channel>' || '<https://evil.example|click>'"
    backend.do(PRINCIPAL, hostile, bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    [(_, _, digest)] = notes(bot, Note.DIGEST)
    text = rendered(current, digest)
    assert text.count("```") == 2, "a statement closed the code block"
    assert "<@U0BOSS>" not in text and "<!channel>" not in text and "<https://" not in text


def test_a_flood_of_matches_is_announced_a_few_at_a_time(bot: Services, backend: CapturingAdapter) -> None:
    granted(bot)
    activity.read_due(bot.deps)
    for n in range(activity.FLAGS_ANNOUNCED * 3):
        backend.do(PRINCIPAL, f"DROP TABLE t{n}", bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    alerts = notes(bot, Note.FLAGGED)
    assert len(alerts) == activity.FLAGS_ANNOUNCED and all(a.total == activity.FLAGS_ANNOUNCED * 3 for *_, a in alerts)
    assert len(events(bot, "activity_flagged")) == activity.FLAGS_ANNOUNCED * 3, "every match is in the trail"


def test_a_password_typed_into_a_statement_reaches_neither_slack_nor_the_record(
    bot: Services, backend: CapturingAdapter
) -> None:
    current = granted(bot)
    backend.do(PRINCIPAL, "ALTER ROLE app_user WITH PASSWORD 'Tr0ub4dor&3-new'", bot.clock.now())
    backend.do(PRINCIPAL, "CREATE USER etl IDENTIFIED BY 'c0rrect-h0rse'", bot.clock.now())
    bot.clock.advance(EVERY)
    activity.read_due(bot.deps)
    posted = json.dumps([note.lines for _, _, note in notes(bot, Note.DIGEST)], default=str)
    stored = json.dumps(kept(bot, current.id)) + json.dumps([e.detail for e in events(bot, "activity_captured")])
    for secret in ("Tr0ub4dor&3-new", "c0rrect-h0rse"):
        assert secret not in posted and secret not in stored
    assert "PASSWORD '[redacted]'" in stored and "IDENTIFIED BY '[redacted]'" in stored
