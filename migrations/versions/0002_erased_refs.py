"""Erased references: meetings, payments and customer ids removed by an erasure.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_refs",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("ref", sa.String(420), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_refs")
