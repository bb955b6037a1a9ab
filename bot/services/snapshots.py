"""A read-only snapshot of a request, taken after a transaction commits; what every message is rendered from."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.domain.states import Status
from bot.policy import label
from bot.store import queries
from bot.store.models import Decision, Request


@dataclass(frozen=True)
class DecisionView:
    approver_id: str
    approve: bool
    at: datetime
    step: int = 0
    comment: str | None = None  # a denial's reason, an approval's comment
    via: str | None = None  # listed, oncall or escalation
    round: int = 0  # 0: the request; N: its Nth extension


@dataclass(frozen=True)
class StepView:
    """One approval step as it stands: who approved it, how many it needs."""

    name: str | None
    required: int
    approved_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewView:
    """The review's two steps: the holder's account, then the sign-off (``reviewer_id``, ``notes``, ``done_at``).
    Fields added later have defaults, so snapshots owed before them still load."""

    status: str
    reviewer_id: str | None
    notes: str | None
    done_at: datetime | None
    reminders_sent: int
    author_id: str | None = None
    written_at: datetime | None = None
    account: str | None = None
    signers: tuple[str, ...] = ()  # who may sign off (user and group ids), for the notices that call on them


@dataclass(frozen=True)
class RequestView:
    id: int
    uid: str
    resource: str
    requester_id: str
    reason: str
    duration: timedelta
    emergency: bool
    status: Status
    created_at: datetime
    approvals_required: int
    decisions: tuple[DecisionView, ...] = ()
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    ended_by: str | None = None
    instructions: str | None = None
    failure: str | None = None
    principal: str | None = None  # who the requester is on the backend
    revoke_attempts: int = 0
    review: ReviewView | None = None
    origin_channel: str | None = None
    approval_channel: str | None = None
    approval_ts: str | None = None
    alert_channel: str | None = None
    alert_ts: str | None = None
    superseded_by: int | None = None  # the emergency that replaced this request while it was pending
    level: str | None = None  # the resource's access level; None where the resource declares no levels
    lesser_levels: tuple[str, ...] = ()  # levels less privileged than ``level`` that were available
    # The approval of the round in question (the request while pending, else a waiting extension, else the request):
    steps: tuple[StepView, ...] = ()
    waiting_step: int | None = None  # index of the step waiting for approvals
    asking: tuple[str, ...] = ()  # who the waiting step calls on (user and group ids), for mentions
    escalated: bool = False
    auto_approved: bool = False  # approved at once: the requester was on call
    approval_link: str | None = None  # permalink of the approval message
    audit_mentions: tuple[str, ...] = ()  # who an emergency alert calls on in the audit channel
    extension_round: int = 0  # the extension waiting for approvals (with extension_seconds), or the last one
    extension_seconds: int | None = None
    extension_by: str | None = None
    lapses_at: datetime | None = None  # when a pending request lapses undecided
    origin_incident: bool = False  # typed in an incident channel, which then hears every notice
    requester_name: str | None = None  # shown where a mention would call on the requester
    drill: bool = False  # made by a drill (bot/services/drills.py): no person holds it, and no review is owed
    policy_version: str | None = None  # the policy version it was made under (services/policy_book.py)

    @property
    def label(self) -> str:
        """How people name what was asked for: `orders-db`, or `orders-db:write` for a level."""
        return label(self.resource, self.level)

    @property
    def access_ended_at(self) -> datetime | None:
        """When the holder's access ended, as they were told it would: ``expires_at`` for an expiry (the revoke that
        enforces it lands a sweep later, at ``ended_at``), else when it was revoked."""
        if self.status is Status.EXPIRED and self.expires_at is not None and self.ended_at is not None:
            return min(self.expires_at, self.ended_at)
        return self.ended_at

    @property
    def approvers(self) -> list[str]:
        return [d.approver_id for d in self.decisions if d.approve and d.round == 0]

    @property
    def denier(self) -> str | None:
        return next((d.approver_id for d in self.decisions if not d.approve and d.round == 0), None)

    @property
    def denial(self) -> DecisionView | None:
        return next((d for d in self.decisions if not d.approve and d.round == 0), None)

    @property
    def comments(self) -> list[DecisionView]:
        """Decisions of the request itself that came with words, in order."""
        return [d for d in self.decisions if d.comment and d.round == 0]

    def step_name(self, index: int) -> str:
        if index >= len(self.steps):
            return f"step {index + 1}"
        name = self.steps[index].name
        numbered = f"step {index + 1} of {len(self.steps)}"
        return f"{numbered} ({name})" if name else numbered


@dataclass(frozen=True)
class Approval:
    """The parts of a snapshot the approval flow works out (bot/services/common.py: ``view``)."""

    steps: tuple[StepView, ...] = ()
    waiting_step: int | None = None
    asking: tuple[str, ...] = ()
    audit_mentions: tuple[str, ...] = ()


def snapshot(
    session: Session,
    request: Request,
    approvals_required: int,
    lesser_levels: tuple[str, ...] = (),
    approval: Approval = Approval(),
    decided: Sequence[Decision] | None = None,
    *,
    unreviewed: bool = False,
) -> RequestView:
    """The request as it stands; ``decided``: its decisions, when the caller has read them already; ``unreviewed``:
    the caller knows it has no review (it was created in this transaction), so none is looked for."""
    review = None if unreviewed else queries.review(session, request.id)
    return RequestView(
        id=request.id,
        uid=request.uid,
        resource=request.resource,
        requester_id=request.requester_id,
        reason=request.reason,
        duration=timedelta(seconds=request.duration_seconds),
        emergency=request.emergency,
        status=Status(request.status),
        created_at=request.created_at,
        approvals_required=approvals_required,
        decisions=tuple(
            DecisionView(d.approver_id, d.approve, d.at, d.step, d.comment, d.via, d.round)
            for d in (queries.decisions(session, request.id) if decided is None else decided)
        ),
        granted_at=request.granted_at,
        expires_at=request.expires_at,
        ended_at=request.ended_at,
        end_reason=request.end_reason,
        ended_by=request.ended_by,
        instructions=request.instructions,
        principal=request.principal,
        failure=request.failure,
        revoke_attempts=request.revoke_attempts,
        review=ReviewView(
            review.status,
            review.reviewer_id,
            review.notes,
            review.done_at,
            review.reminders_sent,
            review.author_id,
            review.written_at,
            review.account,
        )
        if review
        else None,
        origin_channel=request.origin_channel,
        approval_channel=request.approval_channel,
        approval_ts=request.approval_ts,
        alert_channel=request.alert_channel,
        alert_ts=request.alert_ts,
        superseded_by=request.superseded_by,
        level=request.level,
        lesser_levels=lesser_levels,
        steps=approval.steps,
        waiting_step=approval.waiting_step,
        asking=approval.asking,
        escalated=request.escalated_at is not None,
        auto_approved=bool(request.auto_approved),
        approval_link=request.approval_link,
        audit_mentions=approval.audit_mentions,
        extension_round=request.extension_round or 0,
        extension_seconds=request.extension_seconds,
        extension_by=request.extension_by,
        policy_version=request.policy_version,
        lapses_at=request.lapses_at,
        origin_incident=bool(request.origin_incident),
        requester_name=request.requester_name,
        drill=bool(request.drill),
    )


def to_data(view: RequestView) -> dict[str, Any]:
    """The snapshot as plain JSON, for a message owed now and rendered later (bot/store/outbox.py)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, dict):
            return {key: plain(inner) for key, inner in value.items()}
        if isinstance(value, list | tuple):
            return [plain(inner) for inner in value]
        return value

    return plain(asdict(view))


@functools.cache
def _view_fields() -> tuple[frozenset[str], frozenset[str]]:
    """The view's field names, and those that hold a moment: read once, as every message sent from the outbox needs
    them and ``fields`` builds them afresh each time."""
    view = fields(RequestView)
    return frozenset(f.name for f in view), frozenset(f.name for f in view if "datetime" in str(f.type))


@functools.cache
def _review_fields() -> frozenset[str]:
    return frozenset(f.name for f in fields(ReviewView))


def from_data(data: dict[str, Any]) -> RequestView:
    """The snapshot ``to_data`` made, as it was."""
    names, times = _view_fields()
    values = {key: value for key, value in data.items() if key in names}
    for key in times:
        if values.get(key) is not None:
            values[key] = datetime.fromisoformat(values[key])
    values["duration"] = timedelta(seconds=values["duration"])
    values["status"] = Status(values["status"])
    decided = values.get("decisions", ())
    for key in ("lesser_levels", "asking", "audit_mentions"):
        values[key] = tuple(values.get(key, ()))
    values["steps"] = tuple(
        StepView(s.get("name"), int(s["required"]), tuple(s.get("approved_by", ()))) for s in values.get("steps", ())
    )
    values["decisions"] = tuple(
        DecisionView(
            d["approver_id"],
            d["approve"],
            datetime.fromisoformat(d["at"]),
            d.get("step", 0),
            d.get("comment"),
            d.get("via"),
            d.get("round", 0),
        )
        for d in decided
    )
    review = values.get("review")
    if review is not None:
        known = _review_fields()
        moments = {
            key: datetime.fromisoformat(review[key]) if review.get(key) else None for key in ("done_at", "written_at")
        }
        signers = tuple(review.get("signers", ()))
        plain = {key: value for key, value in review.items() if key in known and key not in moments}
        values["review"] = ReviewView(**{**plain, **moments, "signers": signers})
    return RequestView(**values)
