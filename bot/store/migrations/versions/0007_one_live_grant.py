"""one live grant per principal and resource: requests.live_key, unique, and requests.superseded_by

A live request (pending, approved, granting, active, revoking, revoke_failed) holds ``live_key``, its resource and
principal; a unique index lets one row hold each key, and the move to a final status clears it. So a second
overlapping grant, whose revoke would also end the first one's access, cannot be stored, whichever replica tries.
``superseded_by`` names the emergency that replaced a pending request.

A database may already hold overlapping live requests (the bug this revision prevents): only the newest live
request of each key gets it, and the older ones are left as they are, to end on their own. Requests from before
revision 0003 have no principal and take no key.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As bot/domain/live.py has them on the day of this revision; a migration must not change when the code does.
LIVE = ("pending", "approved", "granting", "active", "revoking", "revoke_failed")


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("live_key", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
    requests = sa.table(
        "requests",
        sa.column("id", sa.Integer),
        sa.column("resource", sa.String),
        sa.column("principal", sa.String),
        sa.column("status", sa.String),
        sa.column("live_key", sa.String),
    )
    connection = op.get_bind()
    newest = (
        sa.select(sa.func.max(requests.c.id), requests.c.resource, requests.c.principal)
        .where(requests.c.status.in_(LIVE), requests.c.principal.is_not(None))
        .group_by(requests.c.resource, requests.c.principal)
    )
    for request_id, resource, principal in connection.execute(newest).all():
        key = f"{resource}\n{principal}"
        connection.execute(sa.update(requests).where(requests.c.id == request_id).values(live_key=key))
    op.create_index("ix_requests_live_key", "requests", ["live_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_requests_live_key", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("live_key")
