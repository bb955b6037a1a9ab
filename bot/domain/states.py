"""The life of a request, and which moves are allowed.

pending -> approved -> active -> revoking -> (expired | revoked)
pending -> (denied | cancelled | timed_out)
approved -> grant_failed
revoking -> revoke_failed -> revoking  (retried until the backend confirms)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
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
    Status.APPROVED: frozenset({Status.ACTIVE, Status.GRANT_FAILED}),
    Status.ACTIVE: frozenset({Status.REVOKING}),
    Status.REVOKING: frozenset({Status.EXPIRED, Status.REVOKED, Status.REVOKE_FAILED}),
    Status.REVOKE_FAILED: frozenset({Status.REVOKING}),
}

FINAL = frozenset(
    {Status.EXPIRED, Status.REVOKED, Status.DENIED, Status.CANCELLED, Status.TIMED_OUT, Status.GRANT_FAILED}
)
# Access may exist on the backend in these states; they must all end in a confirmed revoke.
HOLDS_ACCESS = frozenset({Status.ACTIVE, Status.REVOKING, Status.REVOKE_FAILED})
OPEN = frozenset({Status.PENDING, Status.APPROVED}) | HOLDS_ACCESS


def can_move(current: Status, target: Status) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class ReviewStatus(StrEnum):
    DUE = "due"
    DONE = "done"
