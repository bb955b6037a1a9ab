"""claims: indexes for finding due work and a replica's claims

The sweep asks "what is due?" on every pass, and each replica renews and hands back its own claims; without
these indexes both scan the whole requests table, which grows forever.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_requests_status_lease_until", "requests", ["status", "lease_until"])
    op.create_index("ix_requests_claimed_by", "requests", ["claimed_by"])


def downgrade() -> None:
    op.drop_index("ix_requests_claimed_by", table_name="requests")
    op.drop_index("ix_requests_status_lease_until", table_name="requests")
