"""policy versions: each loaded policy kept by its hash, and the version a request was made under

``policy_versions`` holds the raw text of every policy file the bot has run under, keyed by its sha256 (taken before
``${VAR}`` interpolation, so the text holds no secret: those come from the environment). ``requests.policy_version``
is the version a request was made under; a live grant is revoked, extended and reviewed under it even after a reload
changed or removed its resource. Rows from before this revision keep NULL and use the policy of the moment.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    # A plain ADD COLUMN, which SQLite does in place: a batch would rebuild requests, which other tables refer to.
    op.add_column("requests", sa.Column("policy_version", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "policy_version")
    op.drop_table("policy_versions")
