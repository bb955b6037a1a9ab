"""This replica's heartbeat, and the watch on everyone else's.

Every replica writes its row in ``replicas`` every ``Tuning.heartbeat``. A claim whose holder has not written for
``Tuning.dead_after`` is taken over by the next sweep without waiting for its lease, so a replica killed with
SIGKILL (or a process restarted under a new pid, hence a new name) is known dead within seconds. A replica that
sees another's heartbeat lagging sets an alarm for the moment that replica will count as dead, so the takeover
does not wait for the next periodic sweep.

The other side of that bargain is the fence: a replica that could not write its heartbeat for nearly that long
must assume others may already count it as dead and take its claims, so it starts no backend call until it has
written again (see ``Heartbeat.fenced``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.store import replicas

if TYPE_CHECKING:
    from bot.services.deps import Deps, Tuning

log = logging.getLogger("breakglass.heartbeat")

# Rows of replicas not seen for this long are deleted: far longer than any takeover needs them. A claim of a replica
# whose row is gone falls back to its lease, which ran out long before (the wait is at least twice the lease).
PRUNE_AFTER = timedelta(hours=1)


class Heartbeat:
    """When this replica last wrote its heartbeat (on the bot's clock, the value others read)."""

    def __init__(self) -> None:
        self._written: datetime | None = None
        self._lock = threading.Lock()
        # How many times this replica handed its idle claims back after a fence: a claim read before the latest of
        # them may be another replica's now, whatever its lease says (``claims.Prepared``).
        self.hand_backs = 0

    def written(self, at: datetime) -> None:
        with self._lock:
            self._written = at

    def last_written(self) -> datetime | None:
        with self._lock:
            return self._written

    def fenced(self, now: datetime, tuning: Tuning) -> bool:
        """True while this replica must start no backend call on its claims.

        Others take our claims over once our row is ``dead_after`` old, and they cannot know we are merely slow (a
        database that drops our writes, a stalled machine). A call we start after that moment could run beside the
        same call from the replica that took over, and a revoke could land before our late grant: exactly-once would
        be lost. So we stop one beat early, at ``dead_after - heartbeat`` (two beats missed), which leaves a call
        begun just before the fence a full beat to get going before anyone may count us dead. A process that never
        beat (tests, the demo, one-off commands) is not watched by anyone, so it is never fenced.
        """
        written = self.last_written()
        return written is not None and now - written >= tuning.dead_after - tuning.heartbeat


def beat(deps: Deps) -> None:
    """Write this replica's heartbeat, prune the long dead, and set alarms for holders about to count as dead.

    The first call registers the replica. A beat after a fence hands back the claims this replica took but did not
    start on while fenced, so its next sweep takes them up again instead of waiting for their leases.
    """
    tuning = deps.tuning
    now = deps.now()
    was_fenced = deps.heartbeat.fenced(now, tuning)
    if was_fenced:
        deps.heartbeat.hand_backs += 1  # before the hand-back: no call prepared until now may then trust its claim
    with deps.db.transaction() as session:
        replicas.beat(session, tuning.instance, now)
        replicas.prune(session, now - max(PRUNE_AFTER, tuning.lease * 2))
        handed_back = replicas.release_idle(session, tuning.instance, now, deps.leases.held()) if was_fenced else 0
        holders = replicas.holders(session, tuning.instance)
    deps.heartbeat.written(now)
    if was_fenced:
        log.warning("heartbeat written again; backend calls resume (%s idle claims handed back)", handed_back)
    watch(deps, holders, now)


def watch(deps: Deps, holders: list[tuple[str, datetime]], now: datetime) -> list[datetime]:
    """Set an alarm for the moment each lagging claim holder counts as dead; returns the moments set.

    Only holders that will count as dead before our next beat looks again: a live replica's row is at most one beat
    old, so its moment keeps moving on and an alarm for it would only wake a sweep that finds nothing.
    """
    tuning = deps.tuning
    moments = sorted({seen_at + tuning.dead_after for _, seen_at in holders})
    wanted = [max(moment, now) for moment in moments if moment <= now + tuning.heartbeat]
    for moment in wanted:
        deps.alarms.wake_at(moment)
    return wanted


def forget(deps: Deps) -> None:
    """Remove this replica's row on a clean stop, once its claims are handed back: nothing of it is left to watch."""
    with deps.db.transaction() as session:
        replicas.forget(session, deps.tuning.instance)


def dead_before(deps: Deps, now: datetime) -> datetime:
    """Holders last seen at or before this moment count as dead."""
    return now - deps.tuning.dead_after
