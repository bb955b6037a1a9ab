"""The tables. Times are stored in UTC and always come back timezone-aware."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.clock import as_utc


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; naive UTC in SQLite, so that stored values compare correctly as text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    # Every model here names its table, so each is mapped to a Table (not just any FromClause, as typed upstream):
    # the audit chain and its checks update and insert into AuditEvent.__table__ directly.
    __table__: ClassVar[Table]


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_status_lease_until", "status", "lease_until"),
        # Only the asks for more time still waiting (revision 0019): what an approver's lists look for among live
        # grants without reading them all.
        Index(
            "ix_requests_extension_asked",
            "id",
            postgresql_where=text("extension_seconds IS NOT NULL"),
            sqlite_where=text("extension_seconds IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)  # the grant id backends see
    resource: Mapped[str] = mapped_column(String(64), index=True)
    requester_id: Mapped[str] = mapped_column(String(32), index=True)
    requester_name: Mapped[str | None] = mapped_column(String(255))
    requester_email: Mapped[str | None] = mapped_column(String(320))
    # The requester's identity on the backend, fixed when the request is made (see adapters/principal.py).
    principal: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    ended_by: Mapped[str | None] = mapped_column(String(32))
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    instructions: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    revoke_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    origin_channel: Mapped[str | None] = mapped_column(String(32))
    approval_channel: Mapped[str | None] = mapped_column(String(32))
    approval_ts: Mapped[str | None] = mapped_column(String(32))
    alert_channel: Mapped[str | None] = mapped_column(String(32))
    alert_ts: Mapped[str | None] = mapped_column(String(32))
    # Unused since revision 0009: the emergency alert is an outbox row now. Kept (empty) so SQLite need not rebuild
    # this table and a downgrade finds it where it was.
    alert_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # "<resource>\n<principal>" while the request is live, NULL once final: unique, so a principal holds at most
    # one live request per resource (bot/domain/live.py). Cleared by queries.move in the move to a final status.
    live_key: Mapped[str | None] = mapped_column(String(320), unique=True, index=True)
    superseded_by: Mapped[int | None] = mapped_column(Integer)  # the emergency that replaced this pending request
    level: Mapped[str | None] = mapped_column(String(32))  # the resource's access level; None where it declares none
    # Activity capture (bot/services/activity.py): whether the backend records this grant, where the adapter's next
    # read goes on from, when it was last read (moved by compare-and-set, so one replica reads), and how many actions
    # were seen in all (only the first ACTIVITY_KEPT are kept).
    watching: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    activity_cursor: Mapped[str | None] = mapped_column(Text)
    activity_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activity_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # While pending (revision 0014): when it lapses (the resource's pending_timeout, fixed when asked), when the
    # approvers of the waiting step are next reminded and how often they were, when the backups are asked (None once
    # they were, or when there are none) and when they were, and who was on call when last looked at (mentions only:
    # whether an on-call approver may decide is asked again when they click).
    lapses_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    oncall_ids: Mapped[list[str] | None] = mapped_column(JSON)
    auto_approved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    approval_link: Mapped[str | None] = mapped_column(String(512))  # the approval message's permalink
    # An extension waiting for its approvals: round N is the Nth extension asked; decisions of that round count for it.
    extension_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    extension_seconds: Mapped[int | None] = mapped_column(Integer)
    extension_by: Mapped[str | None] = mapped_column(String(32))
    extension_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Typed in an incident channel (channels.incidents): that channel hears every notice, not only the main ones.
    origin_incident: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Made by a drill (bot/services/drills.py, revision 0017): its audit events say so, and it owes no review.
    drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The policy version (sha256 of the file's text) it was made under: revoke, expiry, extension limits and the
    # review it owes follow that version's resource, even after a reload changed it (services/policy_book.py).
    # NULL for rows from before revision 0016, which follow the policy of the moment.
    policy_version: Mapped[str | None] = mapped_column(String(64))


class Decision(Base):
    """One approver's approve or deny. One per person and round (the request, or one of its extensions), which makes
    N-of-M count people and lets a person count in one step only."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("request_id", "round", "approver_id", name="uq_decision_per_round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    approver_id: Mapped[str] = mapped_column(String(32))
    approve: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the approval step it counted in
    round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # 0: the request; N: its Nth extension
    comment: Mapped[str | None] = mapped_column(Text)  # a denial's reason, an approval's comment
    via: Mapped[str | None] = mapped_column(String(16))  # listed, oncall or escalation: why they could decide


class Review(Base):
    """The post-incident review a grant owes once it ends: the holder's account (``author_id``, ``written_at``,
    ``account``), then another person's sign-off (``reviewer_id``, ``done_at``, ``notes``). See ReviewStatus."""

    __tablename__ = "reviews"

    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(10), index=True)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    reviewer_id: Mapped[str | None] = mapped_column(String(32))  # who signed it off
    notes: Mapped[str | None] = mapped_column(Text)  # the sign-off's notes
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it was signed off
    author_id: Mapped[str | None] = mapped_column(String(32))  # who wrote the account: the holder
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    account: Mapped[str | None] = mapped_column(Text)  # what happened and why, in the holder's words


class ActivityRecord(Base):
    """One action a grant's principal took on the backend, as the backend recorded it (the adapter's ``Activity``)."""

    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_request_id_id", "request_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    principal: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flagged: Mapped[str | None] = mapped_column(String(200))  # the alert_on pattern it matched, if any
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only. Nothing in the code updates or deletes these rows, and a hash chain shows if anyone else did:
    ``seq`` is the gapless position, ``hash`` a keyed MAC over the position, the previous event's hash and the
    contents (bot/store/chain.py). ``seq`` stays empty only on events from before the chain, until the first seal
    adopts them."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    request_id: Mapped[int | None] = mapped_column(Integer, index=True)
    resource: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seq: Mapped[int | None] = mapped_column(Integer, unique=True, index=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(16))


class AuditChainHead(Base):
    """The last sealed event's position and hash, with a MAC, in one row: deleting the newest events shows, and
    locking this row is what serialises appends across replicas."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_chain_head_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(16))
    mac: Mapped[str | None] = mapped_column(String(64))


class SlackDelivery(Base):
    """The signature of every request from Slack seen in the last few minutes: a replay finds its own here."""

    __tablename__ = "slack_deliveries"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the X-Slack-Signature header
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Replica(Base):
    """A running replica's heartbeat: a claim whose holder was last seen longer ago than "dead after" is taken over
    without waiting for its lease (bot/store/replicas.py, bot/services/heartbeat.py)."""

    __tablename__ = "replicas"

    instance: Mapped[str] = mapped_column(String(64), primary_key=True)  # the name claims carry in claimed_by
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OutboxMessage(Base):
    """A Slack message the bot owes, written in the same transaction as the change that owes it and delivered from
    here until Slack has it (bot/store/outbox.py, bot/services/delivery.py). Rows of one request go out in ``id``
    order; ``uid`` marks the posted message (its metadata) so a post whose answer was lost can be found again."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_done_at_due_at", "done_at", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    request_id: Mapped[int | None] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(32))
    notice: Mapped[str | None] = mapped_column(String(24))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An attempt began that may have reached Slack (a crash, a timeout): look for the message before posting again.
    in_doubt: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # sent, found (adopted after doubt), undeliverable
    sent_channel: Mapped[str | None] = mapped_column(String(32))
    sent_ts: Mapped[str | None] = mapped_column(String(32))
    failure: Mapped[str | None] = mapped_column(Text)


class Schedule(Base):
    """A named periodic job (reconciliation, drills) that one replica runs per period: whoever moves ``next_at`` on
    by compare-and-set runs it (bot/store/schedules.py)."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_by: Mapped[str | None] = mapped_column(String(64))


class PolicyVersion(Base):
    """A policy file the bot has run under, by the sha256 of its raw text (before ``${VAR}`` interpolation, so it
    holds no secret), kept so that a grant made under it can still be revoked as it was granted after a reload or a
    restart (bot/store/policy_versions.py)."""

    __tablename__ = "policy_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DrillRun(Base):
    """One drill: grant, verify, revoke, verify gone, alerts (bot/services/drills.py). ``steps`` holds each step as
    ``{name, seconds, ok, detail}``; ``label`` is the resource as drilled (``orders-db:read``)."""

    __tablename__ = "drill_runs"
    __table_args__ = (Index("ix_drill_runs_label_passed", "label", "passed"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource: Mapped[str] = mapped_column(String(64))
    level: Mapped[str | None] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(97))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    passed: Mapped[bool] = mapped_column(Boolean)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, cli or slack
    actor: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[int | None] = mapped_column(Integer)


class AuditSinkCursor(Base):
    """Where one audit sink has got to in the chain: the last event it confirmed (bot/store/sinks.py). ``last_seq``
    only moves forward; ``holder`` ships the sink until ``held_until``, so one replica at a time sends to it."""

    __tablename__ = "audit_sink_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_hash: Mapped[str] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the first failure since the last success
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # attempts failed since then
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the audit channel was told; cleared on recovery
    holder: Mapped[str | None] = mapped_column(String(64))
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HomeTab(Base):
    """Someone who has opened the bot's Home tab, and when last (bot/store/home.py): only their pages are re-published
    when a request they are concerned with changes."""

    __tablename__ = "home_tabs"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
