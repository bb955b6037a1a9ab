"""schedules: named periodic jobs that run once per period across replicas

The replica that moves a schedule's ``next_at`` on, by compare-and-set on the value it read, runs the job; the others
see the new ``next_at`` and wait. Reconciliation is the first user; drills will reuse it.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_by", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("schedules")
