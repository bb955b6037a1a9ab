"""approval flow: steps, words with decisions, reminders, escalation, per-resource timeouts, on-call, extensions

``decisions`` gain the step a decision counted in, the words that came with it (a denial's reason, an approval's
comment), how the decider came to be allowed (listed, on call, escalated to) and the round it belongs to: round 0 is
the request itself, round N its Nth extension, which is approved by the same steps. One decision per person per round
(``uq_decision_per_round``), so a person counts in one step only.

``requests`` gain when a pending request lapses (fixed when it is made, from the resource's ``pending_timeout``; rows
pending now keep the 24 h they were made under), when approvers are next reminded and how often they were, when the
backups are asked and when they were, who was on call when last looked at (for mentions), whether the on-call
requester was approved at once, the approval message's permalink, an extension waiting for its approvals, and
whether it was typed in an incident channel (which then hears all of its notices).

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TIMEOUT = timedelta(hours=24)  # what every pending request lapsed after before this revision


def upgrade() -> None:
    # Plain ADD COLUMNs, which SQLite does in place: a batch would rebuild requests, which other tables refer to.
    for column in (
        sa.Column("lapses_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("oncall_ids", sa.JSON, nullable=True),
        sa.Column("auto_approved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("approval_link", sa.String(512), nullable=True),
        sa.Column("extension_round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("extension_seconds", sa.Integer, nullable=True),
        sa.Column("extension_by", sa.String(32), nullable=True),
        sa.Column("extension_asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("origin_incident", sa.Boolean, nullable=False, server_default=sa.false()),
    ):
        op.add_column("requests", column)
    op.create_index("ix_requests_lapses_at", "requests", ["lapses_at"])
    op.create_index("ix_requests_remind_at", "requests", ["remind_at"])
    op.create_index("ix_requests_escalate_at", "requests", ["escalate_at"])
    requests = sa.table(
        "requests",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("lapses_at", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    pending = sa.select(requests.c.id, requests.c.created_at).where(requests.c.status == "pending")
    for request_id, created_at in connection.execute(pending).all():
        lapses = created_at + OLD_TIMEOUT
        connection.execute(sa.update(requests).where(requests.c.id == request_id).values(lapses_at=lapses))

    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("step", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("round", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("comment", sa.Text, nullable=True))
        batch.add_column(sa.Column("via", sa.String(16), nullable=True))
        batch.drop_constraint("uq_decision_per_approver", type_="unique")
        batch.create_unique_constraint("uq_decision_per_round", ["request_id", "round", "approver_id"])


def downgrade() -> None:
    # An extension's approvals cannot be kept under one decision per person and request: they go (the trail keeps
    # them as extension_approved and extended events).
    decisions = sa.table("decisions", sa.column("round", sa.Integer))
    op.get_bind().execute(sa.delete(decisions).where(decisions.c.round > 0))
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("uq_decision_per_round", type_="unique")
        batch.create_unique_constraint("uq_decision_per_approver", ["request_id", "approver_id"])
        batch.drop_column("via")
        batch.drop_column("comment")
        batch.drop_column("round")
        batch.drop_column("step")
    op.drop_index("ix_requests_escalate_at", table_name="requests")
    op.drop_index("ix_requests_remind_at", table_name="requests")
    op.drop_index("ix_requests_lapses_at", table_name="requests")
    # Plain DROP COLUMNs (SQLite 3.35+ does them in place): a batch would rebuild requests, which rows of decisions,
    # reviews and activity refer to, and SQLite refuses to drop a table they still point at.
    for name in (
        "origin_incident",
        "extension_asked_at",
        "extension_by",
        "extension_seconds",
        "extension_round",
        "approval_link",
        "auto_approved",
        "oncall_ids",
        "escalated_at",
        "escalate_at",
        "reminders_sent",
        "remind_at",
        "lapses_at",
    ):
        op.drop_column("requests", name)
