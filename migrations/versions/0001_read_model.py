"""The read model: meetings, payments, customers, notes, offsets, versions, erasures.

Revision ID: 0001
Revises:
"""
from alembic import op

from projections import tables as t

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    metadata = t.metadata
    first = [t.meetings, t.payments, t.customers, t.notes, t.stripe_events_applied, t.projection_offsets,
             t.projection_versions, t.erasures]
    metadata.create_all(bind, tables=first)
    if bind.dialect.name == "postgresql":
        # substring search on name/email for one expert without scanning meetings
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_customers_search_trgm "
            "ON customers USING gin (search_text gin_trgm_ops)"
        )


def downgrade() -> None:
    t.metadata.drop_all(op.get_bind(), tables=[t.meetings, t.payments, t.customers, t.notes, t.stripe_events_applied,
                                               t.projection_offsets, t.projection_versions, t.erasures])
