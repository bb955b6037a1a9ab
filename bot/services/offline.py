"""What an operator does from the command line when Slack is down: list the grants, read one request's whole record,
revoke one.

A revoke here is the bot's own revoke, not a copy of it: the same compare-and-set claim (``active -> revoking`` with
this process as holder and a lease, so of two operators, or an operator and the bot's expiry, exactly one proceeds),
the same backend call and verification, the same final state, audit event, review and Slack messages
(bot/services/revoking.py). Only Slack is left out: the messages are owed in the outbox in the transaction of the
change, and the bot sends them once it drains with Slack answering. A revoke the backend does not confirm ends in
``revoke_failed`` with the claim handed back, which is how the bot's sweep knows to retry it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.states import FINAL, Status
from bot.services import claims, heartbeat, leases, revoking
from bot.services.common import view
from bot.services.deps import Deps
from bot.services.reviews import Action  # one captured action, as the review packet shows it too
from bot.services.snapshots import RequestView
from bot.store import activity, board, outbox, queries, reviews

log = logging.getLogger("breakglass.offline")

LIVE = (Status.GRANTING, Status.ACTIVE, Status.REVOKING, Status.REVOKE_FAILED)
WAITING = (Status.PENDING, Status.APPROVED)


class NoSuchRequest(Exception):
    """The id names no request."""


class NotRevoked(Exception):
    """The revoke did not happen, or did not finish; the text says where the request stands, in one line."""


@dataclass(frozen=True)
class Event:
    """One audit event of a request, details as stored (scrubbed of every secret this process knows)."""

    seq: int | None
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Dossier:
    """Everything known about one request: its snapshot, what the snapshot leaves out, its trail and its activity."""

    view: RequestView
    requester_email: str | None
    decided_at: datetime | None
    claimed_by: str | None  # who holds (or last held) the backend work
    lease_until: datetime | None
    next_attempt_at: datetime | None  # a failed revoke's next try
    receipt: dict[str, Any]
    watching: bool
    activity_seen: int  # actions seen in all; only the first ones are kept
    timeline: tuple[Event, ...]
    activity: tuple[Action, ...]
    owed: int  # Slack messages recorded and not delivered yet


def board_of(
    deps: Deps, states: Iterable[Status] = (*LIVE, *WAITING), resource: str | None = None
) -> list[RequestView]:
    with deps.db.transaction() as session:
        return [view(deps, session, request) for request in board.requests_in(session, states, resource)]


def dossier(deps: Deps, request_id: int) -> Dossier:
    scrub = deps.redactor.scrub_data
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        if request is None:
            raise NoSuchRequest(f"there is no request #{request_id}")
        return Dossier(
            view=view(deps, session, request),
            requester_email=request.requester_email,
            decided_at=request.decided_at,
            claimed_by=request.claimed_by,
            lease_until=request.lease_until,
            next_attempt_at=request.next_attempt_at,
            receipt=scrub(dict(request.receipt or {})),
            watching=bool(request.watching),
            activity_seen=request.activity_seen or 0,
            timeline=tuple(
                Event(e.seq, e.at, e.actor, e.action, scrub(dict(e.detail or {})))
                for e in reviews.timeline(session, request_id)
            ),
            activity=tuple(
                Action(a.at, a.principal, scrub(a.action), a.flagged) for a in activity.kept(session, request_id)
            ),
            owed=outbox.pending(session, request_id),
        )


def revoke(deps: Deps, request_id: int, actor: str, reason: str) -> RequestView:
    """End an active grant now, as ``actor``, for ``reason``. Raises NoSuchRequest, or NotRevoked saying where the
    request stands: not active (pending, still being granted, already ending or ended), taken by someone else first,
    or not confirmed by the backend (then ``revoke_failed``, and the bot retries it)."""
    with keeping_claims(deps):  # a replica from before the claim: the claim never rests on the lease alone
        with deps.db.transaction() as session:
            request = queries.get(session, request_id)
            if request is None:
                raise NoSuchRequest(f"there is no request #{request_id}")
            if request.status != Status.ACTIVE.value:
                raise NotRevoked(standing(view(deps, session, request), request.claimed_by, request.next_attempt_at))
            now = deps.now()
            claimed = claims.claim(deps, session, request, now, end_reason="revoked", actor=actor, words=reason)
        if claimed is None:
            raise NotRevoked(_lost(deps, request_id))
        ended = revoking.finish_revoke(deps, request_id)
    if ended is None:  # our claim was taken over mid-call (the lease ran out): whoever took it finishes it
        raise NotRevoked(_lost(deps, request_id))
    if ended.status is not Status.REVOKED:
        raise NotRevoked(standing(ended, None, _next_attempt(deps, request_id)))
    return ended


def _lost(deps: Deps, request_id: int) -> str:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        assert request is not None, "requests are never deleted"
        if request.status == Status.ACTIVE.value:  # the claim found the row held
            return (
                f"request #{request_id} is being extended right now (by {request.claimed_by}); nothing was done, "
                "revoke it again in a minute"
            )
        return standing(view(deps, session, request), request.claimed_by, request.next_attempt_at)


def _next_attempt(deps: Deps, request_id: int) -> datetime | None:
    with deps.db.transaction() as session:
        request = queries.get(session, request_id)
        return request.next_attempt_at if request else None


def standing(current: RequestView, holder: str | None, next_attempt: datetime | None) -> str:
    """Why a request cannot be revoked now, and what happens to it instead, in one line."""
    number = f"request #{current.id} ({current.label})"
    status = current.status
    if status is Status.PENDING:
        lapses = f"; it lapses at {stamp(current.lapses_at)}" if current.lapses_at else ""
        return (
            f"{number} is pending: nothing was granted, so there is nothing to revoke; approvers can deny it in "
            f"Slack{lapses}"
        )
    if status in (Status.APPROVED, Status.GRANTING):
        return f"{number} is {status.value}: access is being granted; revoke it once it is active"
    if status is Status.REVOKING:
        by = f" by {current.ended_by}" if current.ended_by else ""
        return f"{number} is already being revoked{by} (claimed by {holder or 'nobody'}); it finishes on its own"
    if status is Status.REVOKE_FAILED:
        retry = f" at {stamp(next_attempt)}" if next_attempt else ""
        return (
            f"{number} is revoke_failed: the backend did not confirm the revoke ({current.failure or 'no reason'}); "
            f"the bot retries it{retry}"
        )
    if status in FINAL:
        by = f" by {current.ended_by}" if current.ended_by and status is Status.REVOKED else ""
        when = f" at {stamp(current.ended_at)}" if current.ended_at else ""
        return f"{number} already ended: {status.value}{by}{when}"
    return f"{number} is {status.value}"


def stamp(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@contextmanager
def keeping_claims(deps: Deps) -> Iterator[None]:
    """Be a replica while backend work is in hand: beat and renew leases as the bot does, so nobody takes our claim
    over while the call runs, and a CLI killed mid-call is known dead within seconds (its heartbeat stops) rather
    than a lease later. On the way out, whatever is still claimed is handed back and the heartbeat row removed."""
    stop = threading.Event()

    def keep() -> None:
        every = min(deps.tuning.heartbeat, deps.tuning.lease / 3).total_seconds()
        while not stop.wait(every):
            try:
                heartbeat.beat(deps)
                deps.leases.renew(deps.db, deps.tuning.instance, deps.now(), deps.tuning.lease)
            except Exception as error:  # a beat that fails is what the fence and the lease are for
                log.warning("heartbeat or lease renewal failed (%s)", type(error).__name__)

    heartbeat.beat(deps)
    keeper = threading.Thread(target=keep, name="cli-claims", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join(timeout=5)
        leases.release(deps.db, deps.tuning.instance, deps.now())
        heartbeat.forget(deps)
