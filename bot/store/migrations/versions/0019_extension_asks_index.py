"""an index of the asks for more time still waiting, so an approver's list never reads every live grant

An approver's ``mine`` and Home tab count what waits for their decision: pending requests (few, found by status) and
live grants whose holder asked for more time. With 100,000 live grants the second half read them all. The index
holds only the rows with an ask waiting (``extension_seconds`` set), so it stays as small as the asks.

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ASKED = sa.text("extension_seconds IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_requests_extension_asked", "requests", ["id"], postgresql_where=ASKED, sqlite_where=ASKED)


def downgrade() -> None:
    op.drop_index("ix_requests_extension_asked", table_name="requests")
