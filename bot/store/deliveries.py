"""Requests from Slack seen recently, so that a replayed one is recognised on any replica."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Executable, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from bot.store.db import Database
from bot.store.models import SlackDelivery
from bot.store.results import changed

KEEP = timedelta(minutes=10)  # twice Slack's signature window: older signatures are refused anyway


def first_time(db: Database, digest: str, now: datetime) -> bool:
    """Record a delivery; False if it was recorded before (a replay).

    On the path of every acknowledgement, so one statement in autocommit where the database can say "if not there
    already" (PostgreSQL, SQLite): one round trip, where a transaction took three. A row comes back only if it
    was new (psycopg leaves the row count of an INSERT ... ON CONFLICT unknown)."""
    insert = _insert_if_new(db.engine.dialect.name, digest, now)
    if insert is not None:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return connection.execute(insert).first() is not None
    try:
        with db.transaction() as session:
            session.add(SlackDelivery(digest=digest, seen_at=now))
    except IntegrityError:
        return False
    return True


def _insert_if_new(dialect: str, digest: str, now: datetime) -> Executable | None:
    if dialect == "postgresql":
        return (
            postgresql.insert(SlackDelivery)
            .values(digest=digest, seen_at=now)
            .on_conflict_do_nothing()
            .returning(SlackDelivery.digest)
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(SlackDelivery)
            .values(digest=digest, seen_at=now)
            .on_conflict_do_nothing()
            .returning(SlackDelivery.digest)
        )
    return None


def forget_old(db: Database, now: datetime) -> int:
    with db.transaction() as session:
        return changed(session.execute(delete(SlackDelivery).where(SlackDelivery.seen_at < now - KEEP)))
