"""audit sinks: where each sink has got to in the chain (filled in by the audit-streaming change)

``audit_sink_cursors`` has a row per sink name (bot/store/sinks.py): the last event the sink confirmed (its ``seq`` and
``hash``) and when; how long and how often it has been failing and when the audit channel was told; and which replica
ships it now, until when (one replica per sink, by compare-and-set on the hold).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_sink_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_sink_cursors")
