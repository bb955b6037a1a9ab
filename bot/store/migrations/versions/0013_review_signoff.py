"""review sign-off: a review is the holder's account, then another person's sign-off

Adds who wrote the account, when, and the account itself to ``reviews``; ``reviewer_id``, ``done_at`` and ``notes``
are now the sign-off. A review already ``done`` under the one-step flow stays done: what was recorded becomes its
account, written by whoever recorded it, who also stays its reviewer. A downgrade folds the two steps back into
one: a review whose account is written but not signed off counts as done (the old flow ended when the account was
recorded), and a sign-off's notes follow the account in ``notes``.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs, which SQLite does in place.
    op.add_column("reviews", sa.Column("author_id", sa.String(32), nullable=True))
    op.add_column("reviews", sa.Column("written_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reviews", sa.Column("account", sa.Text, nullable=True))
    op.execute(
        "UPDATE reviews SET author_id = reviewer_id, written_at = done_at, account = notes, notes = NULL "
        "WHERE status = 'done'"
    )


def downgrade() -> None:
    # Signed-off reviews first: once written ones are folded into ``done`` they must not be folded again.
    op.execute(
        "UPDATE reviews SET notes = CASE WHEN notes IS NULL THEN account ELSE account || ' / sign-off: ' || notes END "
        "WHERE status = 'done' AND account IS NOT NULL"
    )
    op.execute(
        "UPDATE reviews SET status = 'done', reviewer_id = author_id, done_at = written_at, notes = account, "
        "next_reminder_at = NULL WHERE status = 'written'"
    )
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("account")
        batch.drop_column("written_at")
        batch.drop_column("author_id")
