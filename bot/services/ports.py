"""What the services need from the outside world, as small interfaces. Slack implements them in bot/slack/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.adapters.base import Person
from bot.services.views import RequestView


class Notice(StrEnum):
    """Something a person should hear about a request."""

    RECEIVED = "received"
    APPROVED = "approved"
    DENIED = "denied"
    ACTIVE = "active"
    GRANT_FAILED = "grant_failed"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"
    CANCELLED = "cancelled"
    REVOKE_FAILED = "revoke_failed"
    REVOKE_RECOVERED = "revoke_recovered"
    EMERGENCY = "emergency"
    REVIEW_DUE = "review_due"
    REVIEW_REMINDER = "review_reminder"
    REVIEW_OVERDUE = "review_overdue"
    REVIEW_DONE = "review_done"
    EXTENDED = "extended"


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str


class Notifier(Protocol):
    """Tells people. Never raises: a failed notice is logged, and the database stays the truth."""

    def post_request(self, channel: str, view: RequestView) -> MessageRef | None:
        """Post the request's message (approval buttons, or the loud emergency alert) to a channel."""
        ...

    def refresh(self, view: RequestView) -> None:
        """Edit every stored message of the request in place to show its current state."""
        ...

    def tell_requester(self, view: RequestView, notice: Notice) -> None: ...

    def send_credentials(self, view: RequestView, credentials: str) -> None:
        """Give the requester a one-time secret (a temporary password) privately. Nothing else keeps it."""
        ...

    def tell_channel(self, channel: str, view: RequestView, notice: Notice) -> None: ...

    def warn_refusals(self, channel: str, actor: str, count: int, window: timedelta, latest: str) -> None:
        """Tell the audit channel that one person (or unsigned traffic) keeps being refused."""
        ...


class MembershipUnknown(Exception):
    """Slack could not say who is in a user group just now. Nothing that depends on membership may be decided on a
    guess: not "not a member" (that reads as offboarding, and refuses real requesters as probing), nor "member"."""


class Directory(Protocol):
    """Who people are, and who is in which user group."""

    def person(self, user_id: str) -> Person: ...

    def members(self, group_ids: list[str]) -> frozenset[str]:
        """Everyone in the groups; raises MembershipUnknown when a group cannot be read now."""
        ...


class Alarms(Protocol):
    """Wakes the sweep at a moment when something falls due. Only an alarm: the sweep finds the work."""

    def wake_at(self, when: datetime) -> None: ...


class NoAlarms:
    def wake_at(self, when: datetime) -> None:
        pass
