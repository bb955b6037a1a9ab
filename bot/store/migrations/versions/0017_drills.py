"""drills: each drill run and its steps, and requests marked as drills (filled in by the drills change)

``requests.drill`` marks a request a drill made (bot/services/drills.py): its audit events say so, and no review is
owed when it ends. ``drill_runs`` keeps each run: what was drilled, when, by which trigger and whom, whether it
passed, and each step with its time.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, which SQLite does in place: a batch would rebuild requests, which other tables refer to.
    op.add_column("requests", sa.Column("drill", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "drill_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("level", sa.String(32), nullable=True),
        sa.Column("label", sa.String(97), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_drill_runs_label_passed", "drill_runs", ["label", "passed"])


def downgrade() -> None:
    op.drop_index("ix_drill_runs_label_passed", table_name="drill_runs")
    op.drop_table("drill_runs")
    op.drop_column("requests", "drill")  # in place on SQLite 3.35+, as 0014's downgrade does
