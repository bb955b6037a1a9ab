"""How a request is decided, as the policy declares it: ordered approval steps, reminders and escalation while it
waits, the on-call schedule that may approve or be paged, and what makes breaking the glass allowed.

Plain data: which step is waiting and who may decide it is worked out in bot/domain/approvals.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from bot.policy.types import Duration, SlackIds, Strict, check_slack_ids

REMIND_EVERY = timedelta(minutes=15)
PENDING_TIMEOUT = timedelta(hours=24)
MIN_REMIND_EVERY = timedelta(minutes=1)  # a reminder every few seconds is a flood, not a reminder


class ApprovalStep(Strict):
    """One step of approval: ``required`` distinct people among ``approvers`` approve it before the next step is
    asked. A person counts in one step only, and the requester never counts."""

    name: str | None = Field(default=None, min_length=1, max_length=40)
    approvers: SlackIds
    required: int = Field(default=1, ge=1, le=10)


class OnCallRule(Strict):
    """A resource's (or level's) tie to an on-call schedule of the top-level ``oncall`` service."""

    schedule: str = Field(min_length=1, max_length=64)
    may_approve: bool = False  # whoever is on call now may approve (the first step)
    auto_approve: bool = False  # a request by whoever is on call now is approved at once
    page_on_emergency: bool = False  # breaking the glass pages whoever is on call

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"'{value}' is not a schedule id (letters, digits, '-' or '_')")
        return value


class EmergencyTrigger(Strict):
    """`emergency: {when: incident}`: the glass may be broken only during a real emergency: while the on-call service
    has an open incident (of ``services`` when listed, and at least ``urgency`` or ``priority`` when set), or when
    the command is typed in an incident channel (``channels.incidents``)."""

    when: Literal["incident"]
    services: list[str] = Field(default_factory=list)
    urgency: Literal["high", "low"] | None = None  # PagerDuty; `low` accepts either
    priority: Literal["P1", "P2", "P3", "P4", "P5"] | None = None  # Opsgenie; at least this (P1 is the highest)

    def matches(self, urgency: str | None, priority: str | None) -> bool:
        """Whether an incident of this urgency (PagerDuty) or priority (Opsgenie) is serious enough."""
        if self.urgency == "high" and urgency is not None and urgency != "high":
            return False
        # "P3" > "P2" as text, and P3 is the lower priority
        return not (self.priority is not None and priority is not None and priority > self.priority)


class Escalation(Strict):
    """The keys that shape the wait for a decision, shared by defaults, resources and levels (None: inherited)."""

    remind_approvers_every: Duration | None = None
    escalate_after: Duration | None = None
    escalate_to: list[str] | None = None
    pending_timeout: Duration | None = None

    @field_validator("escalate_to")
    @classmethod
    def _backups(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_slack_ids(value)


FLOW_KEYS = ("remind_approvers_every", "escalate_after", "escalate_to", "pending_timeout")


def flow_problem(
    remind_every: timedelta | None,
    escalate_after: timedelta | None,
    escalate_to: list[str] | None,
    pending_timeout: timedelta | None,
) -> str | None:
    """What is wrong with a resource's (or level's) effective waiting keys, or None."""
    if remind_every is not None and remind_every < MIN_REMIND_EVERY:
        return "remind_approvers_every: at least 1m"
    if escalate_after is not None and not escalate_to:
        return "escalate_after: set escalate_to too (the backup approvers to ask)"
    if escalate_to and escalate_after is None:
        return "escalate_to: set escalate_after too (how long to wait before asking them)"
    if pending_timeout is not None and pending_timeout < timedelta(minutes=1):
        return "pending_timeout: at least 1m"
    if escalate_after is not None and pending_timeout is not None and escalate_after >= pending_timeout:
        return "escalate_after: must be shorter than pending_timeout, or the request lapses before anyone is asked"
    return None
