"""Named periodic jobs that run once per period however many replicas there are.

Every replica asks ``take_turn`` often (each sweep interval); the one whose compare-and-set moves ``next_at`` on from
the value it read runs the job, and every other replica sees the new ``next_at`` and waits. No lease: a run that dies
half-way is simply the period's run, and the next period runs again, which the jobs allow (they are idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from bot.store.db import Database
from bot.store.models import Schedule
from bot.store.results import changed


def take_turn(
    db: Database, name: str, now: datetime, every: timedelta | Callable[[datetime], datetime], replica: str
) -> bool:
    """Whether ``replica`` runs job ``name`` now. True for exactly one caller per period, across replicas. ``every``
    is the period, or (a cron expression) what gives the next run after a moment."""
    due = next_run(db, name)
    if due is not None and due > now:
        return False  # the common answer, given without taking any lock
    try:
        with db.transaction() as session:
            # A write first: it takes the row lock (PostgreSQL) or the write lock (SQLite, where a read holds nothing
            # and a later write from a stale read would fail), so what is read next stays true until commit.
            session.execute(
                update(Schedule)
                .where(Schedule.name == name)
                .values(name=Schedule.name)
                .execution_options(synchronize_session=False)
            )
            row = session.get(Schedule, name, populate_existing=True)
            if row is None:  # the first run ever; two replicas inserting at once collide on the key, and one wins
                first = every(now) if callable(every) else now + every
                session.add(Schedule(name=name, next_at=first, last_run_at=now, last_run_by=replica))
                session.flush()
                return True
            if row.next_at > now:
                return False
            # Keep to the beat while on time; after a long stop start a fresh beat instead of catching up run by run.
            if callable(every):  # a cron's next moment: a long stop skips the moments missed
                following = every(now)
            else:
                following = row.next_at + every
                if following <= now:
                    following = now + every
            moved = session.execute(
                update(Schedule)
                .where(Schedule.name == name, Schedule.next_at == row.next_at)
                .values(next_at=following, last_run_at=now, last_run_by=replica)
                .execution_options(synchronize_session=False)
            )
            return changed(moved) == 1
    except IntegrityError:
        return False


def next_run(db: Database, name: str) -> datetime | None:
    with db.transaction() as session:
        row = session.get(Schedule, name)
        return row.next_at if row else None


def plan(db: Database, name: str, first_at: datetime) -> None:
    """Give job ``name`` its first moment, unless it has one: a job that should not run the moment it is first seen
    (a drill at 03:00 on Mondays) is planned, then taken in turn."""
    if next_run(db, name) is not None:
        return
    try:
        with db.transaction() as session:
            session.add(Schedule(name=name, next_at=first_at))
            session.flush()
    except IntegrityError:
        pass  # another replica planned it first
