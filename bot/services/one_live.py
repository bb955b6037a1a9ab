"""Keeping one live request per principal and resource when a request is stored (the rule: bot/domain/live.py).

The check before the insert gives the person a clear answer; the unique ``live_key`` is what holds across replicas.
Of two submits at once both may pass the check, but only one insert can take the key: the other's transaction is
rolled back whole (no row, no audit event, nothing posted to Slack) and it gets the same answer as if it had come
second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain.live import LiveRequest, refusal, supersedes
from bot.domain.rules import Refused
from bot.domain.states import Status
from bot.policy import label
from bot.services.deps import Deps
from bot.store import audit, queries
from bot.store.models import Request

SUPERSEDED = "superseded"  # the end_reason of a pending request an emergency replaced


def make_way(session: Session, key: str | None, actor: str, emergency: bool, now: datetime) -> Request | None:
    """Clear the way for a new request holding ``key``, inside the transaction that stores it.

    Returns the pending request an emergency withdraws (already moved to ``cancelled``, its key given up), None when
    nothing is live; raises Refused, naming the live request and what to do, when the new one may not be stored.
    """
    if key is None:
        return None
    live = queries.live_request(session, key)
    if live is None:
        return None
    if not supersedes(_live(live), emergency):
        raise refusal(_live(live), actor, now)
    ended = queries.move(
        session, live.id, Status.PENDING, Status.CANCELLED, decided_at=now, end_reason=SUPERSEDED, ended_by=actor
    )
    if not ended:
        # Approved, withdrawn or lapsed since it was read: answer with what it is now.
        current = queries.get(session, live.id)
        assert current is not None
        if current.live_key is None:  # withdrawn or lapsed meanwhile: nothing stands in the way any more
            return None
        raise refusal(_live(current), actor, now)
    return live


def record_superseded(session: Session, superseded: Request, emergency: Request, actor: str, now: datetime) -> Request:
    """Written with the emergency itself: the pending request names what replaced it, for its approval message.
    Returns the superseded request as it is now."""
    queries.set_fields(session, superseded.id, superseded_by=emergency.id)
    audit.record(session, SUPERSEDED, at=now, actor=actor, request=superseded, by_request=emergency.id)
    current = queries.get(session, superseded.id)
    assert current is not None
    return current


def supersedable(deps: Deps, key: str) -> bool:
    """Whether an emergency that lost the key to a request committed at the same moment may replace that request
    (a normal one, still waiting): then the emergency is simply stored again, and supersedes it."""
    with deps.db.transaction() as session:
        live = queries.live_request(session, key)
        return live is not None and supersedes(_live(live), emergency=True)


def lost_race(deps: Deps, key: str | None, actor: str) -> Refused:
    """The answer for a submit whose insert lost the key to one that committed first."""
    if key is not None:
        with deps.db.transaction() as session:
            live = queries.live_request(session, key)
            if live is not None:
                return refusal(_live(live), actor, deps.now())
    # The winner has ended already (a very short race indeed): nothing stands in the way any more.
    return Refused("Another request for the same access was made at the same moment; ask again.")


def _live(request: Request) -> LiveRequest:
    return LiveRequest(
        id=request.id,
        resource=label(request.resource, request.level),
        requester_id=request.requester_id,
        status=Status(request.status),
        emergency=request.emergency,
        expires_at=request.expires_at,
    )
