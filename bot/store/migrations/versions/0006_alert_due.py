"""alert due: an emergency's security alert is owed from the moment the glass breaks until Slack has it

Set in the transaction that records the emergency and cleared once the alert is posted, so an alert lost to a Slack
outage or a crash is sent later by the sweep instead of never.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("alert_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_requests_alert_due_at", ["alert_due_at"])


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_alert_due_at")
        batch.drop_column("alert_due_at")
