"""home_tabs: who has opened the bot's Home tab, so a change re-publishes only pages someone looks at

A row per person, written when they open the Home tab (``app_home_opened``): when a request changes, any replica
re-publishes the pages of the people it concerns who have a row here, and nobody else's (bot/slack/home_refresh.py).
Rows older than a month are forgotten; the next visit writes them again.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home_tabs",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_home_tabs_opened_at", "home_tabs", ["opened_at"])


def downgrade() -> None:
    op.drop_index("ix_home_tabs_opened_at", table_name="home_tabs")
    op.drop_table("home_tabs")
