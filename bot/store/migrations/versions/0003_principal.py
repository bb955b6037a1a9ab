"""principal: the requester's backend identity, stored with the request

Resolved once when the request is made, so the revoke targets exactly the identity that was granted even if the
Slack profile or the policy's mapping changes while access is held. Rows from before this revision have none and
fall back to the Slack user id.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("principal", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("principal")
