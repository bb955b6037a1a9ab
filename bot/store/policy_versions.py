"""The policy files the bot has run under, by version (the sha256 of the raw text): kept once, read back to revoke a
grant as the version it was made under had it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.states import OPEN
from bot.store.models import PolicyVersion, Request


def remember(session: Session, version: str, text: str, now: datetime) -> None:
    """Keep ``text`` under ``version`` unless it is kept already (the same text always has the same version). Two
    replicas loading the same file at once both try: the loser's insert is undone in a savepoint, not its caller's
    transaction."""
    if session.get(PolicyVersion, version) is not None:
        return
    try:
        with session.begin_nested():
            session.add(PolicyVersion(version=version, text=text, loaded_at=now))
    except IntegrityError:
        pass


def text_of(session: Session, version: str) -> str | None:
    return session.scalar(select(PolicyVersion.text).where(PolicyVersion.version == version))


def in_use(session: Session) -> set[str]:
    """The versions some request still needs: one not yet final (it may be granted, revoked or extended under its
    version), or an ended one whose capture is still to be unwatched."""
    needed = or_(Request.status.in_([status.value for status in OPEN]), Request.watching.is_(True))
    rows = session.scalars(select(Request.policy_version).where(needed, Request.policy_version.is_not(None)).distinct())
    return {version for version in rows if version is not None}
