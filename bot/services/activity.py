"""The watched session: what a grant's principal does on the backend, read from the backend's own record while the
grant is live, shown in the approval thread, flagged to security, and kept with the request.

Invariants:

- Capture never decides access. A watch that fails leaves the grant standing (audited and said); a read or unwatch
  that fails never fails or delays a revoke's outcome.
- Nothing is skipped and nothing is kept twice. The adapter's cursor moves only in the transaction that keeps what
  was read before it (``store.activity.store``, a compare-and-set on the cursor), so a failed read, or a crash
  between reading and storing, reads the same actions again next period.
- One replica reads a grant per period: the read is taken by compare-and-set on ``activity_read_at``.
- Everything a batch produces (its rows, the cursor, the ``activity_captured`` event with a hash over the kept rows,
  an ``activity_flagged`` event per match, the digest and the alerts owed to Slack) commits together.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from bot.adapters.base import MAX_ACTION, Activity, Adapter, AdapterError, CapturesActivity, GrantContext, Receipt
from bot.domain.actions import AuditAction
from bot.policy import Resource
from bot.redaction import blank_password_literals
from bot.services import tell
from bot.services.activity_notes import ActivityNote, Line, Note
from bot.services.backend import adapter_error, call_backend, scrubbed
from bot.services.common import grant_context, view
from bot.services.deps import Deps
from bot.store import activity as kept_activity
from bot.store import audit, queries
from bot.store.models import Request

log = logging.getLogger("breakglass.activity")

ACTIVITY_KEPT = 1000  # actions kept per request; the rest are counted (``activity_seen``) and summarised
PAGES_PER_READ = 20  # pages read at once; a busier principal is read on at the next period, nothing is lost
AUDITED_CHARS = 4096  # characters of statements one ``activity_captured`` event quotes; the kept rows have them all
AUDITED_LINE = 300  # characters of one statement quoted in an audit event
DIGEST_LINES = 20  # statements shown in one thread digest
FLAGS_ANNOUNCED = 5  # flagged statements announced to the audit channel per read; the rest are in the digest
FAILURES_SAID_AT = 3  # consecutive failed reads after which the thread hears that capture is not reading
READ_TICK = timedelta(seconds=2)  # how often the scheduler calls read_due; reads start this much early, so none is late
WATCHED_AT_ONCE = 200

CAPTURE_EVENTS = ("capture_started", "activity_captured", "activity_read_failed", "activity_read_recovered")
STREAK_EVENTS = ("capture_started", "activity_read_failed", "activity_read_recovered")


@dataclass(frozen=True)
class Watch:
    """How a grant's watch went: ``on`` if the backend records it, ``error`` if it was asked to and would not."""

    on: bool = False
    error: str | None = None


def _captures(adapter: Adapter | None) -> CapturesActivity | None:
    if isinstance(adapter, CapturesActivity) and adapter.watching():
        return adapter
    return None


# -- at grant ------------------------------------------------------------------------------------------------------


def watch(deps: Deps, adapter: Adapter, ctx: GrantContext, receipt: Receipt) -> Watch:
    """Ask the backend to record the grant's principal, right after the grant returned. Never raises."""
    capturing = _captures(adapter)
    if capturing is None:
        return Watch()
    try:
        call_backend(deps, capturing.watch, ctx, receipt)
    except Exception as raised:
        error = scrubbed(deps, adapter_error(raised))
        log.warning("request %s: capture could not start: %s", ctx.request_number, error)
        return Watch(on=False, error=str(error))
    return Watch(on=True)


def record_watch(deps: Deps, session: Session, request: Request, outcome: Watch) -> None:
    """In the grant's own transaction: the trail and, for a failed watch, the thread and the audit channel."""
    now = deps.now()
    if outcome.on:
        audit.record(session, AuditAction.CAPTURE_STARTED, at=now, request=request, principal=request.principal)
    elif outcome.error is not None:
        audit.record(session, AuditAction.CAPTURE_FAILED, at=now, request=request, stage="watch", error=outcome.error)
        current = view(deps, session, request)
        note = ActivityNote(Note.CAPTURE_FAILED, principal=request.principal or "", error=outcome.error)
        tell.activity(deps, session, current, note)
        tell.activity(deps, session, current, note, channel=deps.policy.channels.audit)


# -- reading -------------------------------------------------------------------------------------------------------


ALERT_WITHIN = timedelta(seconds=60)  # a statement matching alert_on is announced within the minute it ran


def period(resource: Resource | None) -> timedelta:
    """How often a grant's activity is read: every ``activity_every``, and at least every minute where ``alert_on``
    patterns wait to be matched, however long the digest's period (each read posts what it found)."""
    every = resource.activity_every if resource is not None and resource.activity_every else timedelta(seconds=60)
    return min(every, ALERT_WITHIN) if resource is not None and resource.alert_on else every


def read_due(deps: Deps, tick: timedelta = READ_TICK) -> int:
    """Read every watched grant whose period has come, each on the one replica that takes it. Ended grants still
    watched (their revoke's last read was cut short) get that last read and their unwatch. Returns reads made."""
    now = deps.now()
    with deps.db.transaction() as session:
        candidates = kept_activity.watched(session, WATCHED_AT_ONCE)
    done = 0
    for found in candidates:
        every = period(deps.resource(found.resource, found.level))
        read_before = now - max(every - tick, timedelta(0))
        if found.read_at is not None and found.read_at >= read_before:
            continue
        with deps.db.transaction() as session:
            if not kept_activity.take(session, found.request_id, now, read_before):
                continue  # another replica reads it this period
        if found.status in kept_activity.LIVE:
            read(deps, found.request_id)
        else:
            finish(deps, found.request_id)
        done += 1
    return done


def read(deps: Deps, request_id: int) -> bool:
    """Read what the principal did since the cursor, keep it and say it. True if the record could be read through."""
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or not request.watching or request.granted_at is None:
            return False
        ctx = grant_context(deps, request, request.expires_at or request.granted_at)
        receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)
        since, cursor, seen = request.granted_at, request.activity_cursor, request.activity_seen
    capturing = _captures(deps.adapter_for(request))  # read where it was granted, whatever a reload did since
    if capturing is None:
        return _failed(deps, request_id, AdapterError(f"{ctx.label} no longer captures activity", retryable=True))
    items: list[Activity] = []
    moved_to = cursor
    failure: AdapterError | None = None
    for _ in range(PAGES_PER_READ):
        try:
            page = call_backend(deps, capturing.activity, ctx, receipt, since, moved_to)
        except Exception as raised:
            failure = scrubbed(deps, adapter_error(raised))
            break
        items.extend(page.items)
        moved_to = page.cursor
        if not page.more:
            break
    if items or moved_to != cursor:
        _keep(deps, request_id, cursor, seen, moved_to, items)  # what was read before a failure is kept
    if failure is not None:
        return _failed(deps, request_id, failure)
    _recovered(deps, request_id)
    return True


def _patterns(deps: Deps, request: Request) -> list[re.Pattern[str]]:
    resource = deps.resource_for(request)
    return [re.compile(pattern) for pattern in (resource.alert_on if resource else [])]


def _flag(patterns: Sequence[re.Pattern[str]], item: Activity) -> str | None:
    """The first pattern the action matches: in its text as kept, or in what the backend said of it (pgaudit's
    command and object, the command a cut statement began with), so padding a statement past the cut does not hide
    a DROP from alert_on."""
    said = " ".join(str(value) for value in item.detail.values() if isinstance(value, str))
    return next((p.pattern for p in patterns if p.search(item.action) or (said and p.search(said))), None)


def _clean(deps: Deps, item: Activity) -> Activity:
    """Secrets the process knows blanked (the adapter blanked the ones it knew), passwords typed into statements too,
    and the action bounded."""
    action = blank_password_literals(deps.redactor.scrub(item.action))
    if len(action) > MAX_ACTION:
        action = action[: MAX_ACTION - 1] + "…"
    return Activity(item.at, item.principal, action, deps.redactor.scrub_data(dict(item.detail)))


def _keep(
    deps: Deps, request_id: int, cursor_was: str | None, seen_was: int, cursor: str | None, read: list[Activity]
) -> None:
    now = deps.now()
    items = [_clean(deps, item) for item in read]
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        patterns = _patterns(deps, request)
        flagged = [_flag(patterns, item) for item in items]
        rows = kept_activity.store(
            session,
            request_id,
            cursor_was=cursor_was,
            seen_was=seen_was,
            cursor=cursor,
            items=items,
            flagged=flagged,
            kept_at_most=ACTIVITY_KEPT,
            now=now,
        )
        if rows is None:
            log.info("request %s: this batch was stored by another read; dropped", request_id)
            return
        if not items:
            return  # only the cursor moved
        kept = [kept_activity.row_data(row) for row in rows]
        audit.record(
            session,
            AuditAction.ACTIVITY_CAPTURED,
            at=now,
            request=request,
            count=len(items),
            kept=len(rows),
            seen=seen_was + len(items),
            first=items[0].at.isoformat(),
            last=items[-1].at.isoformat(),
            first_id=rows[0].id if rows else None,
            last_id=rows[-1].id if rows else None,
            sha256=kept_activity.batch_hash(kept) if rows else None,
            lines=_audited_lines(items),
        )
        matches = [(item, pattern) for item, pattern in zip(items, flagged, strict=True) if pattern is not None]
        for item, pattern in matches:
            audit.record(
                session,
                AuditAction.ACTIVITY_FLAGGED,
                at=now,
                request=request,
                pattern=pattern,
                statement=_cut(item.action, AUDITED_LINE),
                done_at=item.at.isoformat(),
                principal=item.principal,
            )
        current = view(deps, session, request)
        # The alerts go first: the digest waits for the approval message's thread, an alert waits for nothing.
        for item, pattern in matches[:FLAGS_ANNOUNCED]:
            alert = ActivityNote(
                Note.FLAGGED,
                principal=item.principal,
                lines=(Line(item.at, _cut(item.action, AUDITED_LINE), pattern),),
                total=len(matches),
                first=item.at,
                last=item.at,
            )
            tell.activity(deps, session, current, alert, channel=deps.policy.channels.audit)
        tell.activity(deps, session, current, _digest(request.principal or items[0].principal, items, flagged))
    deps.courier.deliver(request_id)


def _digest(principal: str, items: Sequence[Activity], flagged: Sequence[str | None]) -> ActivityNote:
    lines = [Line(item.at, item.action, pattern) for item, pattern in zip(items, flagged, strict=True)]
    shown = [line for line in lines if line.flagged] + [line for line in lines if not line.flagged]
    return ActivityNote(
        Note.DIGEST,
        principal=principal,
        lines=tuple(Line(line.at, _cut(line.action, AUDITED_LINE), line.flagged) for line in shown[:DIGEST_LINES]),
        total=len(items),
        first=items[0].at,
        last=items[-1].at,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _audited_lines(items: Sequence[Activity]) -> list[str]:
    """The batch's statements for its audit event, within AUDITED_CHARS; the rest are in the kept rows."""
    lines: list[str] = []
    used = 0
    for item in items:
        line = f"{item.at.isoformat()} {_cut(item.action, AUDITED_LINE)}"
        if used + len(line) > AUDITED_CHARS:
            lines.append(f"…and {len(items) - len(lines)} more")
            break
        lines.append(line)
        used += len(line)
    return lines


def _failed(deps: Deps, request_id: int, error: AdapterError) -> bool:
    """A read that failed: the cursor stays, the next period tries again; the thread hears once, not every minute."""
    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        last = kept_activity.last_event(session, request_id, CAPTURE_EVENTS)
        before = (
            int(last.detail.get("attempt", 0))
            if last is not None and last.action == AuditAction.ACTIVITY_READ_FAILED
            else 0
        )
        attempt = before + 1
        audit.record(
            session, AuditAction.ACTIVITY_READ_FAILED, at=now, request=request, error=str(error), attempt=attempt
        )
        if attempt == FAILURES_SAID_AT:
            current = view(deps, session, request)
            note = ActivityNote(Note.READ_FAILING, principal=request.principal or "", error=str(error))
            tell.activity(deps, session, current, note)
    log.warning("request %s: reading its activity failed (attempt %s): %s", request_id, attempt, error)
    deps.courier.deliver(request_id)
    return False


def _recovered(deps: Deps, request_id: int) -> None:
    """A read went through after failed ones: the trail says the gap closed (what it missed was read now)."""
    with deps.db.transaction() as session:
        last = kept_activity.last_event(session, request_id, STREAK_EVENTS)
        if last is None or last.action != "activity_read_failed":
            return
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(
            session,
            AuditAction.ACTIVITY_READ_RECOVERED,
            at=deps.now(),
            request=request,
            after=last.detail.get("attempt"),
        )


# -- at revoke -----------------------------------------------------------------------------------------------------


def finish(deps: Deps, request_id: int) -> None:
    """After a confirmed revoke: a last read, then the unwatch. Never raises; a failure is audited and, for an unwatch,
    retried by ``read_due`` (the request stays ``watching`` until the unwatch succeeds)."""
    try:
        _finish(deps, request_id)
    except Exception as error:  # capture must never turn a revoke into a failure
        log.error("request %s: ending capture failed", request_id, exc_info=error)


def _finish(deps: Deps, request_id: int) -> None:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None or not request.watching:
            return
        ctx = grant_context(deps, request, request.expires_at or deps.now())
        receipt = Receipt(data=dict(request.receipt or {}), instructions=request.instructions)
    read(deps, request_id)
    capturing = _captures(deps.adapter_for(request))
    error: AdapterError | None = None
    if capturing is None:
        error = AdapterError(f"{ctx.label} no longer captures activity; nothing to unwatch", retryable=False)
    else:
        try:
            call_backend(deps, capturing.unwatch, ctx, receipt)
        except Exception as raised:
            error = scrubbed(deps, adapter_error(raised))
    now = deps.now()
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None
        if error is not None and error.retryable:
            audit.record(
                session, AuditAction.CAPTURE_FAILED, at=now, request=request, stage="unwatch", error=str(error)
            )
            return
        if kept_activity.stop(session, request_id):
            audit.record(
                session,
                AuditAction.CAPTURE_ENDED,
                at=now,
                request=request,
                error=str(error) if error else None,
                seen=request.activity_seen,
                kept=kept_activity.kept_count(session, request_id),
            )
