"""Insights: the expert's figures by month (`insight_counts`) and what each customer adds to them
(`customer_insights`), kept by the worker. On PostgreSQL both are LIST partitioned on `version`,
with a partition per version that exists; the worker fills them as it applies events, and a
replay builds them with the rest.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLES = (
    ("insight_counts",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False), ("month", sa.String(7), False),
      ("metric", sa.String(16), False), ("dim", sa.String(250), False), ("value", sa.BigInteger(), False),
      ("label", sa.String(200), True)],
     ("version", "expert_id", "month", "metric", "dim")),
    ("customer_insights",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False), ("customer_id", sa.String(64), False),
      ("contribution", sa.JSON(), False)],
     ("version", "expert_id", "customer_id")),
)


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    for name, columns, key in _TABLES:
        op.create_table(name, *(sa.Column(c, kind, nullable=null) for c, kind, null in columns),
                        sa.PrimaryKeyConstraint(*key, name=f"{name}_pkey"),
                        **({"postgresql_partition_by": "LIST (version)"} if postgres else {}))
    if not postgres:
        return
    versions = sorted(r.version for r in bind.execute(sa.text(
        "SELECT version FROM projection_versions WHERE state <> 'removed'")))
    for version in versions:
        for name, _columns, _key in _TABLES:
            part = f"{name}_v{int(version)}"
            op.execute(f"CREATE TABLE IF NOT EXISTS {_q(part)} "
                       f"(LIKE {_q(name)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            op.execute(f"ALTER TABLE {_q(name)} ATTACH PARTITION {_q(part)} FOR VALUES IN ({int(version)})")


def downgrade() -> None:
    for name, _columns, _key in reversed(_TABLES):
        op.drop_table(name)
