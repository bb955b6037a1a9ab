"""activity: what a grant's principal did on the backend, as the backend recorded it, kept with the request

One row per captured action, up to a cap per request (the rest is counted, not kept). The request carries where the
next read goes on from (``activity_cursor``, the adapter's own) and when it was last read, which is also what one
replica moves by compare-and-set to be the one that reads it.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(255), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("flagged", sa.String(200), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_activity_request_id_id", "activity", ["request_id", "id"])
    # Plain ADD COLUMNs, which SQLite does in place: a batch would rebuild requests, which other tables refer to.
    op.add_column("requests", sa.Column("activity_cursor", sa.Text, nullable=True))
    op.add_column("requests", sa.Column("activity_read_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("requests", sa.Column("activity_seen", sa.Integer, nullable=False, server_default="0"))
    op.add_column("requests", sa.Column("watching", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("watching")
        batch.drop_column("activity_seen")
        batch.drop_column("activity_read_at")
        batch.drop_column("activity_cursor")
    op.drop_index("ix_activity_request_id_id", table_name="activity")
    op.drop_table("activity")
