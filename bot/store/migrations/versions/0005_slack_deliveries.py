"""slack deliveries: the signatures of recent requests from Slack, so a replay is recognised on any replica

Rows older than ten minutes are deleted by the sweep; Slack's signature window is five.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_deliveries",
        sa.Column("digest", sa.String(length=64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_slack_deliveries_seen_at", "slack_deliveries", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_deliveries_seen_at", table_name="slack_deliveries")
    op.drop_table("slack_deliveries")
