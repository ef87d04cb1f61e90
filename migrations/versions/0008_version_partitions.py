"""Each projection version in tables of its own (PostgreSQL): the versioned tables become LIST
partitioned on `version` (as `projections.physical` keeps them).

For each of them the old table is renamed aside, the partitioned parent is made with its
columns and primary key, one partition `<table>_v<N>` is created per version that has rows or is
not removed, the rows are copied, the old table is dropped, and then each partition gets its
secondary indexes `<index>_v<N>` (the parent has none, the trigram index on
`customers.search_text` included) and is analysed. SQLite keeps its plain tables.

The downgrade copies the rows back into plain tables with their indexes as they were.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The versioned tables and their secondary indexes at this revision (what follows `ON <table>`).
INDEXES: dict[str, dict[str, str]] = {
    "meetings": {
        "ix_meetings_booked": "(version, expert_id, customer_email, booked_start)",
        "ix_meetings_cs": "(version, checkout_session_id)",
        "ix_meetings_customer": "(version, expert_id, customer_id)",
        "ix_meetings_email_hash": "(version, email_hash)",
        "ix_meetings_end": "(version, end_time)",
        "ix_meetings_pi": "(version, payment_intent_id)",
        "ix_meetings_start": "(version, start_time)",
    },
    "payments": {
        "ix_payments_booking_hint": "(version, hint_expert, hint_email, hint_start)",
        "ix_payments_charge": "(version, charge_id)",
        "ix_payments_cs": "(version, checkout_session_id)",
        "ix_payments_customer": "(version, expert_id, customer_id)",
        "ix_payments_email_hash": "(version, email_hash)",
        "ix_payments_meeting": "(version, expert_id, meeting_id)",
        "ix_payments_unlinked": "(version, hint_expert, hint_meeting)",
    },
    "payment_aliases": {
        "ix_payment_aliases_payment": "(version, payment_id)",
    },
    "customers": {
        "ix_customers_appts": "(version, expert_id, appointments, customer_id)",
        "ix_customers_email": "(version, expert_id, email)",
        "ix_customers_email_hash": "(version, email_hash)",
        "ix_customers_first_seen": "(version, expert_id, first_seen_at, customer_id)",
        "ix_customers_latest": "(version, expert_id, coalesce(last_appointment_at, '-infinity'::timestamptz), "
                               "customer_id)",
        "ix_customers_name": "(version, expert_id, name, customer_id)",
        "ix_customers_spend": "(version, expert_id, spend_sort, customer_id)",
    },
    "notes": {
        "ix_notes_customer": "(version, expert_id, customer_id)",
    },
    "stripe_events_applied": {},
    "projection_offsets": {},
}
TRIGRAM = ("customers", "ix_customers_search_trgm", "USING gin (search_text gin_trgm_ops)")


def _partition(table: str, version: int) -> str:
    return f"{table}_v{int(version)}"


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
    for table in INDEXES:
        found |= {r.version for r in bind.execute(sa.text(f"SELECT DISTINCT version FROM {_q(table)}"))}
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


def _index_version(version: int) -> None:
    """The secondary indexes of the version's partitions, then their statistics."""
    for table, indexes in INDEXES.items():
        part = _partition(table, version)
        for name, columns in indexes.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {_q(_partition(name, version))} ON {_q(part)} {columns}")
    table, name, how = TRIGRAM
    op.execute(f"CREATE INDEX IF NOT EXISTS {_q(_partition(name, version))} ON {_q(_partition(table, version))} {how}")
    op.execute("ANALYZE " + ", ".join(_q(_partition(table, version)) for table in INDEXES))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    versions = _versions(bind)
    for table in INDEXES:
        if _relkind(bind, table) == "p":
            continue
        aside = _swap(bind, table, partitioned=True)
        for version in sorted(versions):
            op.execute(f"CREATE TABLE {_q(_partition(table, version))} PARTITION OF {_q(table)} "
                       f"FOR VALUES IN ({int(version)})")
        columns = _columns(bind, aside)
        op.execute(f"INSERT INTO {_q(table)} ({columns}) SELECT {columns} FROM {_q(aside)}")
        op.execute(f"DROP TABLE {_q(aside)}")
    for version in sorted(versions):  # indexes built once the rows are in
        _index_version(version)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, indexes in INDEXES.items():
        if _relkind(bind, table) != "p":
            continue
        aside = _swap(bind, table, partitioned=False)
        columns = _columns(bind, aside)
        op.execute(f"INSERT INTO {_q(table)} ({columns}) SELECT {columns} FROM {_q(aside)}")
        op.execute(f"DROP TABLE {_q(aside)}")  # its partitions with it
        for name, indexed in indexes.items():
            op.execute(f"CREATE INDEX {_q(name)} ON {_q(table)} {indexed}")
    table, name, how = TRIGRAM
    op.execute(f"CREATE INDEX IF NOT EXISTS {_q(name)} ON {_q(table)} {how}")
    op.execute(f"ANALYZE {', '.join(_q(table) for table in INDEXES)}")
