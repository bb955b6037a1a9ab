"""The sweep: finds everything overdue in the database and does it. Timers only wake it early; a lost timer delays
work, it never loses it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bot.domain.states import Status
from bot.services import access, reviews
from bot.services.common import announce, view
from bot.services.deps import Deps
from bot.services.ports import Notice
from bot.store import audit, queries

log = logging.getLogger("breakglass.sweep")


@dataclass
class SweepReport:
    revoked: int = 0
    retried: int = 0
    warned: int = 0
    reminded: int = 0
    timed_out: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


class Sweeper:
    """Runs sweeps one at a time. A wake-up during a sweep makes it go round once more instead of waiting."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._running = threading.Lock()
        self._again = threading.Event()

    def __call__(self) -> SweepReport:
        total = SweepReport()
        self._again.set()
        while self._again.is_set():
            if not self._running.acquire(blocking=False):
                return total  # the sweep in progress will go round again
            try:
                self._again.clear()
                report = sweep(self.deps)
                for key, value in vars(report).items():
                    setattr(total, key, getattr(total, key) + value)
            finally:
                self._running.release()
        return total


def sweep(deps: Deps) -> SweepReport:
    report = SweepReport()
    now = deps.now()
    batch = deps.tuning.batch
    with deps.db.transaction() as session:
        expired = queries.expired_ids(session, now, batch)
        retries = queries.revoke_retry_ids(session, now, batch)
        warnings = queries.warning_due_ids(session, now + deps.tuning.expiry_warning, batch)
        reminders = queries.reminder_due_ids(session, now, batch)
        stale = queries.pending_before_ids(session, now - deps.tuning.request_timeout, batch)
    for request_id in expired:
        report.revoked += _guarded(_revoke, deps, request_id)
    for request_id in retries:
        report.retried += _guarded(_revoke, deps, request_id)
    for request_id in warnings:
        report.warned += _guarded(_warn, deps, request_id)
    for request_id in reminders:
        report.reminded += _guarded(reviews.remind, deps, request_id)
    for request_id in stale:
        report.timed_out += _guarded(_time_out, deps, request_id)
    if report:
        log.info("sweep: %s", report)
    return report


def _guarded(step: Callable[[Deps, int], object], deps: Deps, request_id: int) -> int:
    """One bad row must not stop the sweep for every other."""
    try:
        return int(bool(step(deps, request_id)))
    except Exception:
        log.exception("sweep step %s failed for request %s", step.__name__, request_id)
        return 0


def _revoke(deps: Deps, request_id: int) -> bool:
    return access.claim_revoke(deps, request_id) and access.finish_revoke(deps, request_id) is not None


def _warn(deps: Deps, request_id: int) -> bool:
    now = deps.now()
    with deps.db.transaction() as session:
        claimed = queries.set_once(session, request_id, Status.ACTIVE, warned_at=now)
        request = queries.get(session, request_id)
        if not claimed or request is None:
            return False
        current = view(deps, session, request)
    deps.notifier.tell_requester(current, Notice.EXPIRING)
    return True


def _time_out(deps: Deps, request_id: int) -> bool:
    now = deps.now()
    with deps.db.transaction() as session:
        if not queries.move(session, request_id, Status.PENDING, Status.TIMED_OUT, decided_at=now):
            return False
        request = queries.get(session, request_id)
        assert request is not None
        audit.record(session, "timed_out", at=now, request=request)
        current = view(deps, session, request)
    deps.notifier.refresh(current)
    announce(deps, current, Notice.CANCELLED)
    return True
