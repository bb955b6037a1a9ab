"""The life of a request, and which moves are allowed.

pending -> approved -> granting -> active -> revoking -> (expired | revoked)
pending -> (denied | cancelled | timed_out)
granting -> grant_failed                  (the backend refused: nothing to undo)
granting -> revoking -> grant_failed      (an unclear failure, such as a timeout: undo whatever was done)
revoking -> revoke_failed -> revoking     (retried until the backend confirms)

``granting`` and ``revoking`` are claims: they name the process doing the work and a lease that it renews while
it works. When the holder dies, the lease runs out and another process (or the same one restarted) takes over.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    GRANTING = "granting"
    ACTIVE = "active"
    REVOKING = "revoking"
    REVOKE_FAILED = "revoke_failed"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    GRANT_FAILED = "grant_failed"


class EndReason(StrEnum):
    """Why access is being taken away; decides whether the request ends expired or revoked."""

    EXPIRED = "expired"
    REVOKED = "revoked"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.APPROVED, Status.DENIED, Status.CANCELLED, Status.TIMED_OUT}),
    Status.APPROVED: frozenset({Status.GRANTING}),
    Status.GRANTING: frozenset({Status.ACTIVE, Status.GRANT_FAILED, Status.REVOKING}),
    Status.ACTIVE: frozenset({Status.REVOKING}),
    Status.REVOKING: frozenset({Status.EXPIRED, Status.REVOKED, Status.REVOKE_FAILED, Status.GRANT_FAILED}),
    Status.REVOKE_FAILED: frozenset({Status.REVOKING}),
}

FINAL = frozenset(
    {Status.EXPIRED, Status.REVOKED, Status.DENIED, Status.CANCELLED, Status.TIMED_OUT, Status.GRANT_FAILED}
)
# Access may exist on the backend in these states; they must all end in a confirmed revoke.
HOLDS_ACCESS = frozenset({Status.GRANTING, Status.ACTIVE, Status.REVOKING, Status.REVOKE_FAILED})
OPEN = frozenset({Status.PENDING, Status.APPROVED}) | HOLDS_ACCESS
CLAIMS = frozenset({Status.GRANTING, Status.REVOKING})


def can_move(current: Status, target: Status) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class ReviewStatus(StrEnum):
    """A review has two steps by two people: the holder writes the account, someone else signs it off. ``done``
    means both, as it always has; ``written`` is the account without its sign-off."""

    DUE = "due"  # the holder's account is awaited
    WRITTEN = "written"  # the account is written; a sign-off is awaited
    DONE = "done"  # signed off


OPEN_REVIEWS = frozenset({ReviewStatus.DUE, ReviewStatus.WRITTEN})  # still chased by reminders
