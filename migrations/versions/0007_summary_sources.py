"""Customer rows remember which meeting their name and phone came from.

Summaries are now updated from each change (old meeting -> new meeting, old payment -> new
payment) rather than recounted from the customer's whole history. The counts and money sums
undo and redo exactly; the name, email and phone come from the newest booking, so a row keeps
that booking's version (`profile_version`, `phone_version`) to know whether a change is newer.
Rows written before carry NULL there and are recounted from their history the next time they
change.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by 0001 as it stands has these already; older ones get them here
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("customers")}
    for name in ("profile_version", "phone_version"):
        if name not in have:
            op.add_column("customers", sa.Column(name, sa.String(80)))


def downgrade() -> None:
    op.drop_column("customers", "phone_version")
    op.drop_column("customers", "profile_version")
