"""Requests from Slack seen recently, so that a replayed one is recognised on any replica."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from bot.store.db import Database
from bot.store.models import SlackDelivery
from bot.store.results import changed

KEEP = timedelta(minutes=10)  # twice Slack's signature window: older signatures are refused anyway


def first_time(db: Database, digest: str, now: datetime) -> bool:
    """Record a delivery; False if it was recorded before (a replay)."""
    try:
        with db.transaction() as session:
            session.add(SlackDelivery(digest=digest, seen_at=now))
    except IntegrityError:
        return False
    return True


def forget_old(db: Database, now: datetime) -> int:
    with db.transaction() as session:
        return changed(session.execute(delete(SlackDelivery).where(SlackDelivery.seen_at < now - KEEP)))
