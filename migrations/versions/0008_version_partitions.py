"""Each projection version in tables of its own (PostgreSQL): the versioned tables become LIST
partitioned on `version` (`projections.physical`).

For each of them the old table is renamed aside, the partitioned parent is made with its
columns and primary key, one partition is created per version that has rows or is not removed,
the rows are copied, the old table is dropped, and then each partition gets its
secondary indexes (the parent has none, the trigram index on `customers.search_text` included)
and is analysed. SQLite keeps its plain tables.

The downgrade copies the rows back into plain tables with the indexes of the models.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

from projections import physical

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# the versioned tables of this revision's time (later revisions add theirs, partitioned at once)
_TABLES = ("meetings", "payments", "payment_aliases", "customers", "notes", "stripe_events_applied",
           "projection_offsets")
TABLES = tuple(tb for tb in physical.VERSIONED if tb.name in _TABLES)


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


def _relkind(bind, name: str) -> str | None:
    return bind.execute(sa.text("SELECT relkind::text FROM pg_class WHERE relname = :n AND pg_table_is_visible(oid)"),
                        {"n": name}).scalar()


def _columns(bind, name: str) -> str:
    return ", ".join(_q(c["name"]) for c in sa.inspect(bind).get_columns(name))


def _versions(bind) -> set[int]:
    """Every version not removed, and every version any table holds rows of."""
    found = {r.version for r in bind.execute(sa.text(
        "SELECT version FROM projection_versions WHERE state <> 'removed'"))}
    for table in TABLES:
        found |= {r.version for r in bind.execute(sa.text(f"SELECT DISTINCT version FROM {_q(table.name)}"))}
    return found


def _swap(bind, name: str, partitioned: bool) -> str:
    """Rename `name` aside (its primary key too) and create its successor empty; returns the old name."""
    aside = f"{name}_{'unpartitioned' if partitioned else 'partitioned'}"
    pk = sa.inspect(bind).get_pk_constraint(name)
    op.execute(f"ALTER TABLE {_q(name)} RENAME TO {_q(aside)}")
    op.execute(f"ALTER INDEX {_q(pk['name'])} RENAME TO {_q(aside + '_pkey')}")
    op.execute(f"CREATE TABLE {_q(name)} (LIKE {_q(aside)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
               + (" PARTITION BY LIST (version)" if partitioned else ""))
    op.execute(f"ALTER TABLE {_q(name)} ADD CONSTRAINT {_q(name + '_pkey')} "
               f"PRIMARY KEY ({', '.join(_q(c) for c in pk['constrained_columns'])})")
    return aside


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    versions = _versions(bind)
    for table in TABLES:
        if _relkind(bind, table.name) == "p":
            continue
        aside = _swap(bind, table.name, partitioned=True)
        for version in sorted(versions):
            op.execute(f"CREATE TABLE {_q(physical.partition_name(table, version))} PARTITION OF {_q(table.name)} "
                       f"FOR VALUES IN ({int(version)})")
        columns = _columns(bind, aside)
        op.execute(f"INSERT INTO {_q(table.name)} ({columns}) SELECT {columns} FROM {_q(aside)}")
        op.execute(f"DROP TABLE {_q(aside)}")
    for version in sorted(versions):  # indexes built once the rows are in
        physical.index_version_sync(bind, version)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        if _relkind(bind, table.name) != "p":
            continue
        aside = _swap(bind, table.name, partitioned=False)
        columns = _columns(bind, aside)
        op.execute(f"INSERT INTO {_q(table.name)} ({columns}) SELECT {columns} FROM {_q(aside)}")
        op.execute(f"DROP TABLE {_q(aside)}")  # its partitions with it
        for index in table.indexes:
            index.create(bind)
    op.execute("CREATE INDEX IF NOT EXISTS ix_customers_search_trgm ON customers USING gin (search_text gin_trgm_ops)")
    op.execute(f"ANALYZE {', '.join(_q(tb.name) for tb in TABLES)}")
