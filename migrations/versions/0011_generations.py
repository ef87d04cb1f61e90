"""Generations: per version and scope (an expert, a payment that names none, a provider's message),
a counter every writer of the scope's rows bumps in its transaction, so that a worker holding
those rows in memory sees that another writer changed them (`projections.fences`). Updated in
place at every batch: fillfactor 70, so that the updates stay on their page.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table("projection_generations",
                    sa.Column("version", sa.Integer(), primary_key=True),
                    sa.Column("scope", sa.String(300), primary_key=True),
                    sa.Column("generation", sa.BigInteger(), nullable=False),
                    **({"postgresql_with": {"fillfactor": 70}} if postgres else {}))


def downgrade() -> None:
    op.drop_table("projection_generations")
