"""replica heartbeats: each running replica's name, when it started and when it last said it was alive

A claim whose holder has not been seen for the "dead after" time is taken over without waiting for its lease, so a
replica that died (or a process restarted under a new name) is known dead within seconds. Rows of replicas not
seen for a long time are pruned by the living.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("instance", sa.String(length=64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_replicas_seen_at", "replicas", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_replicas_seen_at", table_name="replicas")
    op.drop_table("replicas")
