"""Audit streaming: every audit event, in chain order with its seq and hash, to each sink the policy names.

What this module keeps true: an event counts as delivered to a sink only once the sink confirmed it (bot/sinks/), and
only then does the sink's cursor move (bot/store/sinks.py), so nothing is ever dropped: a sink that is down is
retried (after 1, 2, 4… s, at most a minute apart) for as long as it takes, and when it answers again it gets every
event it missed, in order. Delivery is at least once: a batch that was sent but not confirmed (a timeout, a crash
before the cursor moved) is sent again, so a receiver can see the events at that boundary twice, never a gap. A trail
that cannot be streamed on (a seq deleted, or events below the mark rewritten) fails the sink the same way, so it is
alerted rather than left to stall in silence or skip past what the receiver never got.

Nothing here is on a request's path. Events are read back from the table after their transaction has committed, by
a thread of each sink's own that wakes every second (and at once when ``nudge``\\d), so a slow or hung sink delays
neither a person's click nor another sink. One replica at a time ships a given sink (its hold); after a restart the
sink goes on from the last event it confirmed, and a sink whose name is new starts at the beginning of the chain.

A sink failing for ``alert_after`` (5 minutes) or ``alert_attempts`` (10) attempts in a row, whichever comes first,
is told to the audit channel once, through the outbox, and recorded (``audit_sink_failing``); once it has caught up
the channel hears that it recovered (``audit_sink_recovered``). Every failure is a log line with its attempt count
and the number of events waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.domain.actions import AuditAction
from bot.services import heartbeat, tell
from bot.services.deps import Deps
from bot.services.ports import Courier
from bot.sinks import Sink, SinkDown
from bot.store import audit
from bot.store import sinks as cursors
from bot.store.chain import instant
from bot.store.reachability import database_outage

log = logging.getLogger("breakglass.streaming")

WAKE = 1.0  # seconds between turns of each sink's thread, real time
HOLD = timedelta(seconds=30)  # a hold outlives a turn and a send's timeout; renewed every turn and every batch
RETRY_FIRST = timedelta(seconds=1)
RETRY_MAX = timedelta(minutes=1)
ALERT_AFTER = timedelta(minutes=5)
ALERT_ATTEMPTS = 10
BATCHES_PER_TURN = 20  # then the thread looks at stopping and the hold before going on
FAILING = AuditAction.AUDIT_SINK_FAILING
RECOVERED = AuditAction.AUDIT_SINK_RECOVERED
INTERRUPTED = AuditAction.AUDIT_SINK_INTERRUPTED  # a hole or a rewrite in the trail below a sink's mark


def retry_wait(failures: int) -> timedelta:
    return min(RETRY_FIRST * 2 ** max(failures - 1, 0), RETRY_MAX)


@dataclass
class _Waiting:
    until: datetime | None = None  # no attempt before this (backoff after a failure)


class Shipper:
    """Ships the sinks; ``tick`` runs one turn of each in the calling thread (tests), ``start`` a thread per sink."""

    def __init__(
        self,
        deps: Deps,
        sinks: Sequence[Sink],
        *,
        alert_after: timedelta = ALERT_AFTER,
        alert_attempts: int = ALERT_ATTEMPTS,
        wake: float = WAKE,
        courier: Courier | None = None,
    ) -> None:
        self.deps = deps
        self.courier = courier or deps.courier  # hands the audit channel's messages over once they are owed
        self.sinks = list(sinks)
        self.alert_after = alert_after
        self.alert_attempts = alert_attempts
        self.wake = wake
        self._waiting = {sink.name: _Waiting() for sink in self.sinks}
        self._nudged = {sink.name: threading.Event() for sink in self.sinks}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- one turn --------------------------------------------------------------------------------------------------

    def tick(self) -> dict[str, int]:
        """One turn of every sink: the events each confirmed."""
        return {sink.name: self.ship(sink) for sink in self.sinks}

    def ship(self, sink: Sink) -> int:
        """Send ``sink`` what it has not confirmed, a batch at a time, while it confirms; the events it confirmed."""
        deps, me = self.deps, self.deps.tuning.instance
        now = deps.now()
        with deps.db.transaction() as session:
            cursor = cursors.read(session, sink.name)
        # Renewed only once half of it is gone: an idle sink then costs reads, not a write a second that would queue
        # behind (or ahead of) a person's transaction for SQLite's one write lock. A transaction of its own, which
        # writes first: on SQLite a write after a read fails if another writer committed in between.
        try:
            if cursor is None or cursor.holder != me or cursor.held_until is None or cursor.held_until < now + HOLD / 2:
                with deps.db.transaction() as session:
                    cursor = cursors.hold(session, sink.name, me, now, now + HOLD, heartbeat.dead_before(deps, now))
        except IntegrityError:
            return 0  # another replica created the sink's row just now, and holds it
        waiting = self._waiting[sink.name]
        if cursor is None:
            waiting.until = None  # another replica ships it; its backoff is its own
            return 0
        if waiting.until is not None and now < waiting.until:
            return 0
        delivered = 0
        for _ in range(BATCHES_PER_TURN):
            with deps.db.transaction() as session:
                events = cursors.after(session, cursor.last_seq, sink.batch)
                broken = cursors.interruption(session, cursor.last_seq, cursor.last_hash, events)
            if broken:  # a hole or a rewrite below the mark: alerted at once, and streaming goes on
                resumed = self._interrupted(sink, cursor, broken)
                if resumed is None:
                    return delivered
                cursor = resumed
                continue
            if not events:
                if cursor.alerted_at is not None:
                    self._recovered(sink, cursor, delivered)
                break
            try:
                sink.send(events)
            except SinkDown as error:
                self._failed(sink, error)
                return delivered
            except Exception as error:  # a fault of ours, not the sink's: still retried and alerted, never skipped
                log.exception("audit sink %s: sending failed unexpectedly", sink.name)
                self._failed(sink, SinkDown(f"unexpected {type(error).__name__}"))
                return delivered
            waiting.until = None
            last = events[-1]
            now = deps.now()
            with deps.db.transaction() as session:
                moved = cursors.advance(
                    session, sink.name, me, cursor.last_seq, last["seq"], last["hash"], now, now + HOLD
                )
            if not moved:  # our hold lapsed and another replica went on: it owns the cursor now
                log.warning("audit sink %s: lost its hold after sending up to seq %s", sink.name, last["seq"])
                return delivered
            cursor = replace(cursor, last_seq=last["seq"], last_hash=last["hash"], failures=0, failing_since=None)
            delivered += len(events)
        if delivered:
            log.debug("audit sink %s: %s events delivered, up to seq %s", sink.name, delivered, cursor.last_seq)
        return delivered

    def _failed(self, sink: Sink, error: SinkDown) -> None:
        deps, me = self.deps, self.deps.tuning.instance
        now = deps.now()
        why = deps.redactor.scrub(str(error))
        with deps.db.transaction() as session:
            cursor = cursors.failed(session, sink.name, me, now)
            if cursor is None:
                return
            backlog = cursors.backlog(session, cursor.last_seq)
            since = cursor.failing_since or now
            due = now - since >= self.alert_after or cursor.failures >= self.alert_attempts
            alerted = due and cursor.alerted_at is None and cursors.mark_alerted(session, sink.name, me, now)
            if alerted:
                report = _report(sink, FAILING, cursor, backlog, since=since, error=why)
                audit.record(session, FAILING, at=now, **_detail(report))
                tell.audit_sink(deps, session, report)
        self._waiting[sink.name].until = now + retry_wait(cursor.failures)
        log.warning(
            "audit sink %s (%s) failed: %s; attempt %s since %s, %s events waiting, next try in %ss",
            sink.name,
            sink.kind,
            why,
            cursor.failures,
            instant(since),
            backlog,
            int(retry_wait(cursor.failures).total_seconds()),
        )
        if alerted:
            self.courier.deliver(None)

    def _interrupted(self, sink: Sink, cursor: cursors.Cursor, broken: cursors.Interruption) -> cursors.Cursor | None:
        """Tell the audit channel and the trail (whose new event the receiver gets too), and move the mark to where
        streaming resumes; the cursor as moved, or None if another replica holds the sink now."""
        deps, me = self.deps, self.deps.tuning.instance
        now = deps.now()
        with deps.db.transaction() as session:
            if not cursors.rewind(session, sink.name, me, cursor.last_seq, broken.resume_seq, broken.resume_hash):
                return None
            report = _report(sink, INTERRUPTED, cursor, cursors.backlog(session, broken.resume_seq), since=now)
            report["error"] = broken.why
            audit.record(session, INTERRUPTED, at=now, **_detail(report))
            tell.audit_sink(deps, session, report)
        log.error("audit sink %s (%s): %s", sink.name, sink.kind, broken.why)
        self.courier.deliver(None)
        return replace(cursor, last_seq=broken.resume_seq, last_hash=broken.resume_hash)

    def _recovered(self, sink: Sink, cursor: cursors.Cursor, delivered: int) -> None:
        deps, me = self.deps, self.deps.tuning.instance
        now = deps.now()
        with deps.db.transaction() as session:
            if not cursors.clear_alert(session, sink.name, me):
                return
            report = _report(sink, RECOVERED, cursor, 0, since=cursor.alerted_at)
            audit.record(session, RECOVERED, at=now, **_detail(report))
            tell.audit_sink(deps, session, report)
        log.info("audit sink %s (%s) recovered: caught up at seq %s", sink.name, sink.kind, cursor.last_seq)
        self.courier.deliver(None)

    # -- threads ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for sink in self.sinks:
            thread = threading.Thread(target=self._run, args=(sink,), name=f"audit-sink:{sink.name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def nudge(self) -> None:
        """Ship now rather than at the next wake (new events were just committed)."""
        for event in self._nudged.values():
            event.set()

    def _run(self, sink: Sink) -> None:
        nudged = self._nudged[sink.name]
        while not self._stopping.is_set():
            try:
                self.ship(sink)
            except Exception as error:  # the database away: one line per outage; the cursor keeps our place
                database_outage.failed(log, f"shipping audit sink {sink.name}", error)
            nudged.wait(self.wake)
            nudged.clear()

    def stop(self, grace: float = 5.0) -> None:
        """Stop the threads (a send in flight may finish within ``grace``), hand back our holds, close the sinks."""
        self._stopping.set()
        self.nudge()
        for thread in self._threads:
            thread.join(timeout=grace)
        self._threads.clear()
        try:
            with self.deps.db.transaction() as session:
                cursors.release(session, self.deps.tuning.instance)
        except Exception as error:  # the holds lapse by themselves
            database_outage.failed(log, "handing back audit sinks", error)
        for sink in self.sinks:
            sink.close()


def _report(
    sink: Sink, state: str, cursor: cursors.Cursor, waiting: int, *, since: datetime | None, error: str | None = None
) -> dict[str, Any]:
    """What the audit channel is told, and the audit event records."""
    return {
        "sink": sink.name,
        "type": sink.kind,
        "state": state,
        "since": instant(since) if since is not None else None,
        "failures": cursor.failures,
        "waiting": waiting,
        "last_seq": cursor.last_seq,
        "error": error,
    }


def _detail(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key != "state"}
