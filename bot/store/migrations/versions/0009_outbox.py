"""outbox: every Slack message the bot owes, written with the change that owes it

Replaces ``requests.alert_due_at`` (a one-message outbox for the emergency alert): the alert becomes an outbox row
like every other message. An alert still owed when this migration runs is carried over as a row. The column stays,
empty: dropping it would make SQLite rebuild ``requests`` under the tables that reference it, and a downgrade could
not put it back where it was.

Revision ID: 0009
Revises: 0008
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox = op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("notice", sa.String(24), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("in_doubt", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("sent_channel", sa.String(32), nullable=True),
        sa.Column("sent_ts", sa.String(32), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.UniqueConstraint("uid"),
    )
    op.create_index("ix_outbox_request_id", "outbox", ["request_id"])
    op.create_index("ix_outbox_done_at_due_at", "outbox", ["done_at", "due_at"])
    bind = op.get_bind()
    owed = bind.execute(sa.text("SELECT id FROM requests WHERE alert_due_at IS NOT NULL")).scalars().all()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # stored naive there, as the models' UTCDateTime does
        now = now.replace(tzinfo=None)
    if owed:
        op.bulk_insert(
            outbox,
            [
                {
                    "uid": uuid.uuid4().hex,
                    "request_id": request_id,
                    "kind": "alert",
                    "channel": None,  # the audit channel as the policy names it when the message goes out
                    "notice": None,
                    "payload": {},
                    "created_at": now,
                    "due_at": now,
                    "attempts": 0,
                    "in_doubt": True,  # it may have been posted before: look first
                }
                for request_id in owed
            ],
        )
    op.execute(sa.text("UPDATE requests SET alert_due_at = NULL WHERE alert_due_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_outbox_done_at_due_at", table_name="outbox")
    op.drop_index("ix_outbox_request_id", table_name="outbox")
    op.drop_table("outbox")
