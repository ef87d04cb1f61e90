"""Merged customers: `customer_merges`, one row per customer merged into another of the same
expert (`projections.rules.merges`), LIST partitioned on `version` like the other versioned
tables, with a partition per version that exists, looked up by survivor and by email hash.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_INDEXES = (("ix_customer_merges_survivor", "version, expert_id, survivor_id"),
            ("ix_customer_merges_email_hash", "version, email_hash"))


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table("customer_merges",
                    sa.Column("version", sa.Integer(), nullable=False),
                    sa.Column("expert_id", sa.String(200), nullable=False),
                    sa.Column("customer_id", sa.String(64), nullable=False),
                    sa.Column("survivor_id", sa.String(64), nullable=False),
                    sa.Column("email_hash", sa.String(64), nullable=False),
                    sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("added", sa.JSON(), nullable=False),
                    sa.PrimaryKeyConstraint("version", "expert_id", "customer_id", name="customer_merges_pkey"),
                    **({"postgresql_partition_by": "LIST (version)"} if postgres else {}))
    if not postgres:
        for name, columns in _INDEXES:
            op.execute(f"CREATE INDEX {name} ON customer_merges ({columns})")
        return
    for row in bind.execute(sa.text("SELECT version FROM projection_versions WHERE state <> 'removed'")).all():
        part = f"customer_merges_v{int(row.version)}"
        op.execute(f"CREATE TABLE IF NOT EXISTS {_q(part)} (LIKE customer_merges INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        op.execute(f"ALTER TABLE customer_merges ATTACH PARTITION {_q(part)} FOR VALUES IN ({int(row.version)})")
        for name, columns in _INDEXES:
            op.execute(f"CREATE INDEX IF NOT EXISTS {_q(name + '_v' + str(int(row.version)))} ON {_q(part)} ({columns})")


def downgrade() -> None:
    op.drop_table("customer_merges")
