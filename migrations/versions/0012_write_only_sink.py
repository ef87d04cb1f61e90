"""A write-only sink: fewer indexes on `customers`, room on the pages the worker updates in place.

The worker updates a customer's row at nearly every event. An update that is not HOT writes an
entry in every index of the table, so `customers` keeps the indexes its readers need most (the
default sort, the look-up by email and the page count, the erasure's look-up by email hash) and
loses the other sorts' indexes and the trigram index of the search; those queries order or
filter the expert's rows, found by the default sort's index. The tables updated in place get a
fillfactor (`projections.physical.FILLFACTOR`), for existing partitions too (pages written
from now on).

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DROPPED = ("ix_customers_first_seen_a", "ix_customers_name_a", "ix_customers_appts_a", "ix_customers_spend_a",
           "ix_customers_contact_a")
FILLFACTOR = {"customers": 80, "meetings": 85, "payments": 70, "customer_insights": 70, "insight_counts": 70,
              "projection_offsets": 50, "customer_profiles": 80, "email_reports": 80}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        for name in DROPPED:
            op.execute(f'DROP INDEX IF EXISTS "{name}"')
        return
    versions = sorted(r.version for r in bind.execute(sa.text("SELECT version FROM projection_versions")))
    present = {r.relname for r in bind.execute(sa.text("SELECT relname FROM pg_class WHERE relkind = 'r'"))}
    for version in versions:
        for name in DROPPED + ("ix_customers_search_trgm",):
            op.execute(f'DROP INDEX IF EXISTS "{name}_v{int(version)}"')
        for table, fill in FILLFACTOR.items():
            if f"{table}_v{int(version)}" in present:
                op.execute(f'ALTER TABLE "{table}_v{int(version)}" SET (fillfactor = {fill})')


def downgrade() -> None:
    raise NotImplementedError("the dropped indexes are built again by a replay of the previous release")
