"""Compare-and-set moves of an extension that waits for its approvals (the ``extension_*`` columns of a request).

One extension waits at a time. It is opened only on an active grant with none waiting and in the round read, and
settled (denied, or dropped when access ends) only while it is still the one read, so a second ask, two deciders
clicking at once or a late click change nothing twice: the row count says who won.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.domain.states import Status
from bot.store.models import Request
from bot.store.results import changed


def open_extension(session: Session, request_id: int, *, round_read: int, seconds: int, by: str, now: datetime) -> bool:
    """Open extension round ``round_read + 1`` for ``seconds`` more, asked by ``by``; False when the grant ended,
    another extension waits, or a round was opened since ``round_read`` was read."""
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.status == Status.ACTIVE.value,
            Request.expires_at > now,
            Request.extension_seconds.is_(None),
            Request.extension_round == round_read,
        )
        .values(extension_round=round_read + 1, extension_seconds=seconds, extension_by=by, extension_asked_at=now)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1


def settle_extension(session: Session, request_id: int, *, round_: int, seconds: int) -> bool:
    """Let go of the extension of round ``round_`` by ``seconds`` that waits (denied, or dropped as access ends),
    keeping the round number: its decisions stay that round's. False when it is no longer the one waiting."""
    statement = (
        update(Request)
        .where(
            Request.id == request_id,
            Request.extension_round == round_,
            Request.extension_seconds == seconds,
        )
        .values(extension_seconds=None, extension_by=None, extension_asked_at=None)
        .execution_options(synchronize_session=False)
    )
    return changed(session.execute(statement)) == 1
