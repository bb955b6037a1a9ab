"""The sweep: finds everything overdue in the database and does it. Timers only wake it early; a lost timer delays
work, it never loses it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import Any

from bot.domain.states import FINAL, Status
from bot.logs import log_context
from bot.services import access, claims, decisions, reviews, revoking, tell, waiting
from bot.services.common import view
from bot.services.delivery import Courier
from bot.services.delivery_thread import BackgroundCourier
from bot.services.deps import Deps
from bot.services.lanes import Lanes
from bot.services.ports import Notice
from bot.services.recorder import Recorder
from bot.services.snapshots import RequestView
from bot.store import deliveries, queries

log = logging.getLogger("breakglass.sweep")


@dataclass
class SweepReport:
    """What a sweep did (or, when not waited for, set going)."""

    revoked: int = 0
    granted: int = 0
    warned: int = 0
    reminded: int = 0
    approvers_reminded: int = 0
    escalated: int = 0
    timed_out: int = 0
    delivered: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())

    def add(self, other: SweepReport) -> None:
        for key, value in vars(other).items():
            setattr(self, key, getattr(self, key) + value)


class Sweeper:
    """Runs sweeps one at a time. A wake-up during a sweep makes it go round once more instead of waiting.

    A sweep claims due work in the sweep thread and hands it to worker lanes, one lane per resource, so a hung
    backend delays only its own resource; the messages they owe go out from a delivery thread of their own, so a
    Slack outage delays nothing. The scheduler does not wait for the lanes; tests and the demo do (``wait=True``).
    """

    def __init__(self, deps: Deps, lookahead: timedelta = timedelta(seconds=30)) -> None:
        self.deps = deps
        self.lookahead = lookahead  # at least the sweep interval: how far ahead each sweep sets alarms
        self.lanes = Lanes(deps.tuning.lane_width)
        self.courier = Courier(deps)
        self.delivery = BackgroundCourier(self.courier)
        # Giving way is bounded by a third of the lease: the claims it holds meanwhile live on their renewals alone.
        give_way = min(5.0, deps.tuning.lease.total_seconds() / 3)
        self.recorder = Recorder(deps, self.delivery, self._calls_coming, give_way=give_way)
        self._running = threading.Lock()
        self._again = threading.Event()

    def _calls_coming(self) -> bool:
        """Backend calls queued or running, or a sweep claiming more: a wave is under way."""
        return self._running.locked() or self.lanes.busy("backend")

    def __call__(self, wait: bool = True) -> SweepReport:
        total = SweepReport()
        self._again.set()
        while self._again.is_set():
            if not self._running.acquire(blocking=False):
                return total  # the sweep in progress will go round again
            try:
                self._again.clear()
                total.add(self._sweep(wait))
            finally:
                self._running.release()
        return total

    def kick(self) -> None:
        """An alarm's entry: start due work and return."""
        report = self(wait=False)
        if report:
            log.info("sweep started %s", report)

    def tick(self) -> None:
        """The periodic sweep's entry: a kick, then alarms for what falls due before the next periodic sweep. Only
        here: an expiry wave fires an alarm per grant, and each re-reading every upcoming moment made the wave's
        cost grow with its square, and kept the heartbeat from its thread."""
        self.kick()
        self._alarm_ahead()

    def _alarm_ahead(self) -> None:
        """Every replica sets alarms for whatever falls due before its next sweep, not only for what it set going
        itself: a replica that dies takes its own alarms with it, and its grants' expiries must not then wait for
        a survivor's periodic sweep. Which replica acts is still decided by the claims."""
        now = self.deps.now()
        with self.deps.db.transaction() as session:
            upcoming = queries.upcoming_times(session, now, until=now + self.lookahead)
        for moment in upcoming:
            self.deps.alarms.wake_at(moment)

    def close(self, grace: float) -> list[Hashable]:
        """Start nothing new; give running work up to ``grace`` seconds. Returns what was still running."""
        deadline = time.monotonic() + grace
        unfinished = self.lanes.close(grace)
        self.recorder.close(max(deadline - time.monotonic(), 0.1))
        self.delivery.close(max(deadline - time.monotonic(), 0.1))
        return unfinished

    def _sweep(self, wait: bool) -> SweepReport:
        deps = replace(self.deps, courier=self.delivery)
        started: list[tuple[str, Future[Any]]] = []

        def start(kind: str, lane: str, key: Hashable, step: Callable[[], object], **about: Any) -> None:
            if kind == "revoked" and self.recorder.has(about["request_id"]):
                return  # its call is made and its record on the way: a second call would revoke it twice
            with log_context(**about):  # the lane runs the step, and logs its failure, in this context
                future = self.lanes.submit(lane, key, step)
            if future is not None:
                started.append((kind, future))

        batch = deps.tuning.batch
        while True:
            claimed = claims.claim_due(deps, batch)
            for work in claimed:
                kind = "granted" if work.step is claims.Step.GRANT else "revoked"
                finish = partial(access.finish, deps, work, self.recorder)
                start(
                    kind,
                    work.resource,
                    ("backend", work.request_id),
                    finish,
                    request_id=work.request_id,
                    resource=work.resource,
                )
            if len(claimed) < batch:
                break

        now = deps.now()
        deliveries.forget_old(deps.db, now)
        with deps.db.transaction() as session:
            warnings = queries.warning_due_ids(session, now + deps.tuning.expiry_warning, batch)
            reminders = queries.reminder_due_ids(session, now, batch)
            stale = queries.lapsed_ids(session, now, batch)
            nudges = queries.approver_reminders_due_ids(session, now, batch)
            escalations = queries.escalations_due_ids(session, now, batch)
        for kind, ids, step in (
            ("warned", warnings, _warn),
            ("reminded", reminders, reviews.remind),
            ("timed_out", stale, decisions.lapse),
            ("escalated", escalations, waiting.escalate),
            ("approvers_reminded", nudges, waiting.remind),
        ):
            for request_id in ids:
                start(kind, SLACK_LANE, (kind, request_id), partial(step, deps, request_id), request_id=request_id)

        report = SweepReport()
        for kind, future in started:
            if not wait or _succeeded(future):
                setattr(report, kind, getattr(report, kind) + 1)
        if wait:  # everything owed so far goes out before the caller looks, in this thread
            self.delivery.flush()
            report.delivered = self.courier.drain()
        else:
            self.delivery.kick()  # owed messages whose retry fell due, and those of a process that died
        return report


SLACK_LANE = "~slack"  # warnings, reminders and lapses: Slack and the database only; no resource has this name


def _succeeded(future: Future[Any]) -> bool:
    """Done for good: a revoke confirmed, a grant active, a notice sent. A retry still to come does not count."""
    try:
        result = future.result()
        if isinstance(result, Future):  # a revoke handed to the recorder
            result = result.result()
        if isinstance(result, revoking.Ended):
            result = result.current
    except Exception:
        return False  # logged by the lane or the recorder; one bad row must not stop the sweep for every other
    if isinstance(result, RequestView):
        return result.status in FINAL or result.status is Status.ACTIVE
    return bool(result)


def _warn(deps: Deps, request_id: int) -> bool:
    now = deps.now()
    with deps.db.transaction() as session:
        claimed = queries.set_once(session, request_id, Status.ACTIVE, warned_at=now)
        request = queries.get(session, request_id)
        if not claimed or request is None:
            return False
        current = view(deps, session, request)
        tell.announce(deps, session, current, Notice.EXPIRING)
    deps.courier.deliver(request_id)
    return True
