"""Refused attempts and rate limits.

Every refused attempt on something a person may not do (approve their own request, click as a non-approver,
revoke someone else's access, a bad signature, a foreign workspace, a flood of clicks) is written to the audit
trail. When one person's refusals pile up, the audit channel hears about it, so probing is seen while it happens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.actions import AuditAction
from bot.services import tell
from bot.services.deps import Deps
from bot.store import audit, queries

# Audit actions that mean "someone tried something they may not do".
REFUSALS = frozenset(
    {
        AuditAction.DECISION_REFUSED,
        AuditAction.REVOKE_REFUSED,
        AuditAction.EXTEND_REFUSED,
        AuditAction.REVIEW_REFUSED,
        AuditAction.REQUEST_REFUSED,
        AuditAction.DRILL_REFUSED,
        AuditAction.RATE_LIMITED,
        AuditAction.WORKSPACE_REFUSED,
        AuditAction.SIGNATURE_REFUSED,
        AuditAction.REPLAY_REFUSED,
    }
)
WINDOW = timedelta(minutes=10)  # refusals are counted per person over this window
UNSIGNED = "unverified"  # the actor of a request whose signature failed: nobody we can name


def refused(
    deps: Deps,
    actor: str,
    action: AuditAction,
    why: str,
    *,
    request_id: int | None = None,
    resource: str | None = None,
    **detail: Any,
) -> None:
    """Record a refused attempt; tell the audit channel when this person's refusals reach the alert threshold."""
    assert action in REFUSALS, action
    now = deps.now()
    with deps.db.transaction() as session:
        event = audit.record(
            session, action, at=now, actor=actor, request_id=request_id, resource=resource, reason=why, **detail
        )
        session.flush()
        event_id = event.id
    # Ranked in a transaction of its own, after ours committed: each refusal gets a distinct rank even when two
    # replicas record one at the same moment, so the alert goes out once per threshold reached, never twice.
    with deps.db.transaction() as session:
        rank = audit.rank_among(session, actor, REFUSALS, now - WINDOW, event_id)
        alert = bool(rank) and _alerts_at(rank, deps.tuning.refusals_alert)
        if alert:
            tell.refusals(deps, session, actor, rank, WINDOW, why)
    if alert:
        deps.courier.deliver(None)


def _alerts_at(rank: int, threshold: int) -> bool:
    """At the threshold, then at each doubling of it: loud at first, never a flood."""
    if rank < threshold or rank % threshold:
        return False
    multiple = rank // threshold
    return multiple & (multiple - 1) == 0


@dataclass
class _Bucket:
    tokens: float
    updated: datetime
    warned: bool = False


class RateLimiter:
    """A token bucket per person: ``per_minute`` Slack interactions, refilled continuously.

    Kept in memory: it protects this replica's workers from one person's flood. Behind a load balancer each
    replica counts on its own, so a person gets up to (replicas x per_minute); the hourly request cap, counted in
    the database, is what holds across replicas.
    """

    MAX_PEOPLE = 10_000  # people tracked at once; the least recently seen are forgotten first

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, person: str) -> Verdict:
        now = self.clock.now()
        with self._lock:
            bucket = self._buckets.pop(person, None) or _Bucket(float(self.per_minute), now)
            elapsed = max((now - bucket.updated).total_seconds(), 0.0)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + elapsed * self.per_minute / 60)
            bucket.updated = now
            self._buckets[person] = bucket
            while len(self._buckets) > self.MAX_PEOPLE:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                bucket.warned = False
                return Verdict(True, first_refusal=False, retry_after=0)
            first, bucket.warned = not bucket.warned, True
            wait = (1 - bucket.tokens) * 60 / self.per_minute
            return Verdict(False, first_refusal=first, retry_after=max(int(wait + 0.999), 1))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    first_refusal: bool  # the first refusal of a burst: worth one audit event, not one per click
    retry_after: int  # seconds until one more interaction is allowed

    def message(self, per_minute: int) -> str:
        return (
            f"🐢 Slow down: at most {per_minute} Breakglass actions a minute. "
            f"Nothing was done; try again in {self.retry_after} s."
        )


def requests_cap_problem(session: Session, deps: Deps, actor: str, now: datetime) -> str | None:
    """Why this person may not file another request now (too many in the last hour), or None. Counted before
    anything else is looked up, and again in the transaction that would store the request, where the rule takes
    effect."""
    limit = deps.tuning.requests_per_hour
    recent = queries.requests_since(session, actor, now - timedelta(hours=1))
    if recent < limit:
        return None
    return (
        f"You have made {recent} requests in the last hour; the limit is {limit}. "
        "Ask an approver directly if this is a real emergency."
    )
