"""Named schedules run once per period however many replicas ask, on SQLite and PostgreSQL: replicas asking at the
same moment from threads of their own, every minute of the clock, as the scheduler has each of them do."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.store import schedules, schema
from bot.store.db import Database

EVERY = timedelta(minutes=10)
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REPLICAS = ("replica-a", "replica-b", "replica-c", "replica-d")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    schema.upgrade(database.engine)
    yield database
    database.dispose()


def ask_together(db: Database, now: datetime) -> list[str]:
    """Every replica asks at ``now`` at once; the ones told to run."""
    with ThreadPoolExecutor(len(REPLICAS)) as pool:
        answers = list(pool.map(lambda replica: schedules.take_turn(db, "reconcile", now, EVERY, replica), REPLICAS))
    return [replica for replica, runs in zip(REPLICAS, answers, strict=True) if runs]


def test_one_replica_runs_each_period_however_many_ask(db: Database) -> None:
    runs: list[tuple[datetime, list[str]]] = []
    for minute in range(0, 41):
        now = START + timedelta(minutes=minute)
        winners = ask_together(db, now)
        if winners:
            runs.append((now, winners))

    assert [at for at, _ in runs] == [START + EVERY * n for n in range(5)]  # on the beat, from the first ask
    assert all(len(winners) == 1 for _, winners in runs)
    assert schedules.next_run(db, "reconcile") == START + EVERY * 5


def test_after_a_long_stop_it_runs_once_and_starts_a_fresh_beat(db: Database) -> None:
    assert ask_together(db, START)
    late = START + timedelta(hours=3, minutes=7)

    assert len(ask_together(db, late)) == 1  # once, not once for each period missed
    assert ask_together(db, late + timedelta(minutes=9)) == []
    assert len(ask_together(db, late + EVERY)) == 1
