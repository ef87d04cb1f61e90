"""The relationship: custom field definitions, field values, tags, archive, communications.

`field_definitions` (one row per expert), `customer_profiles` (one row per customer the expert
wrote something on) and the two look-up tables the list's filters use, `customer_tags` and
`customer_field_values`. On PostgreSQL each is LIST partitioned on `version`, like the other
versioned tables, with a partition per version that exists.

`customers` gains `archived` (copied from the profile), and its five sort indexes start with it
after the expert: `(version, expert_id, archived, <sort key>, customer_id)`, so the default list
(archived=false) and the archive are each one range of the sort's index; the email's index ends
with it, so a page's count stays an index-only scan. Each index is rebuilt
under its new name where the old one exists (a version still being replayed has none yet: its
readers' indexes are built when it catches up). `customers` also gains `last_contact_at` (the
newest communication, from the profile) and its sort index.

`communications` holds what the platform sent a customer and what the expert logged;
`email_reports` the email provider's delivery reports by its email id.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)

# (name, columns, primary key, secondary indexes as (name, columns))
_TABLES = (
    ("field_definitions",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False),
      ("definitions", sa.JSON(), False), ("updated_at", _TIME, False)],
     ("version", "expert_id"), ()),
    ("customer_profiles",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False),
      ("customer_id", sa.String(64), False), ("email_hash", sa.String(64), False),
      ("tags", sa.JSON(), False), ("fields", sa.JSON(), False), ("archived", sa.Boolean(), False),
      ("last_contact_at", _TIME, True), ("updated_at", _TIME, False)],
     ("version", "expert_id", "customer_id"),
     (("ix_customer_profiles_email_hash", ("version", "email_hash")),)),
    ("customer_tags",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False), ("tag", sa.String(40), False),
      ("customer_id", sa.String(64), False)],
     ("version", "expert_id", "tag", "customer_id"), ()),
    ("customer_field_values",
     [("version", sa.Integer(), False), ("expert_id", sa.String(200), False), ("key", sa.String(40), False),
      ("value", sa.String(500), False), ("customer_id", sa.String(64), False)],
     ("version", "expert_id", "key", "value", "customer_id"), ()),
    ("communications",
     [("version", sa.Integer(), False), ("communication_id", sa.String(64), False),
      ("expert_id", sa.String(200), False), ("customer_id", sa.String(64), False),
      ("email_hash", sa.String(64), False), ("source", sa.String(10), False), ("channel", sa.String(20), False),
      ("kind", sa.String(20), True), ("subject", sa.String(300), True), ("summary", sa.Text(), True),
      ("at", _TIME, False), ("meeting_id", sa.String(200), True), ("provider_message_id", sa.String(200), True),
      ("status", sa.String(20), True)],
     ("version", "communication_id"),
     (("ix_communications_customer", ("version", "expert_id", "customer_id", "at")),
      ("ix_communications_provider", ("version", "provider_message_id")),
      ("ix_communications_email_hash", ("version", "email_hash")))),
    ("email_reports",
     [("version", sa.Integer(), False), ("email_id", sa.String(200), False), ("reports", sa.JSON(), False)],
     ("version", "email_id"), ()),
)


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


# the sort indexes of `customers` and the email's: old name -> (new name, columns, the old columns)
_SORTS = {
    "ix_customers_first_seen": ("ix_customers_first_seen_a", "archived, first_seen_at, customer_id",
                                "first_seen_at, customer_id"),
    "ix_customers_name": ("ix_customers_name_a", "archived, name, customer_id", "name, customer_id"),
    "ix_customers_appts": ("ix_customers_appts_a", "archived, appointments, customer_id", "appointments, customer_id"),
    "ix_customers_spend": ("ix_customers_spend_a", "archived, spend_sort, customer_id", "spend_sort, customer_id"),
    "ix_customers_latest": ("ix_customers_latest_a", "archived, {latest}, customer_id", "{latest}, customer_id"),
    "ix_customers_email": ("ix_customers_email_a", "email, archived", "email"),
}
# new beside the others, where the readers' indexes are: (name, columns after version and expert)
_CONTACT = ("ix_customers_contact_a", "archived, {contact}, customer_id")
_LATEST = {"postgresql": "coalesce(last_appointment_at, '-infinity'::timestamptz)",
           "sqlite": "coalesce(last_appointment_at, '')"}
_CONTACT_KEY = {"postgresql": "coalesce(last_contact_at, '-infinity'::timestamptz)",
                "sqlite": "coalesce(last_contact_at, '')"}


def _new_columns(bind) -> None:
    have = {c["name"] for c in sa.inspect(bind).get_columns("customers")}
    if "archived" not in have:
        op.add_column("customers", sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()))
    if "last_contact_at" not in have:
        op.add_column("customers", sa.Column("last_contact_at", _TIME))


def _indexes(bind, table: str) -> set[str]:
    """Index names of a table, expression indexes included (the inspector leaves those out on SQLite)."""
    sql = ("SELECT indexname AS name FROM pg_indexes WHERE tablename = :t" if bind.dialect.name == "postgresql"
           else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t")
    return {r.name for r in bind.execute(sa.text(sql), {"t": table})}


def _resort(bind, table: str, suffix: str) -> None:
    """On one table (a partition, or SQLite's table): each old sort index replaced by the new one."""
    have = _indexes(bind, table)
    latest = _LATEST[bind.dialect.name]
    readers = False
    for old, (new, columns, _before) in _SORTS.items():
        if old + suffix not in have:
            continue
        readers = True
        op.execute(f"DROP INDEX IF EXISTS {_q(old + suffix)}")
        _create(new + suffix, table, f"version, expert_id, {columns.format(latest=latest)}")
    if readers:
        name, columns = _CONTACT
        _create(name + suffix, table, f"version, expert_id, {columns.format(contact=_CONTACT_KEY[bind.dialect.name])}")


def _create(name: str, table: str, columns: str) -> None:
    """CREATE INDEX in the form SQLAlchemy writes it (SQLite keeps the statement's text as given)."""
    op.execute(f"CREATE INDEX {name} ON {table} ({columns})")


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    _new_columns(bind)
    for name, columns, key, indexes in _TABLES:
        op.create_table(name, *(sa.Column(c, kind, nullable=null) for c, kind, null in columns),
                        sa.PrimaryKeyConstraint(*key, name=f"{name}_pkey"),
                        **({"postgresql_partition_by": "LIST (version)"} if postgres else {}))
        if not postgres:
            for index, cols in indexes:
                op.create_index(index, name, list(cols))
    if not postgres:
        _resort(bind, "customers", "")
        return
    parts = [r.relname for r in bind.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'customers' AND pg_table_is_visible(p.oid)"))]
    for part in parts:
        _resort(bind, part, part.removeprefix("customers"))
    versions = sorted(r.version for r in bind.execute(sa.text(
        "SELECT version FROM projection_versions WHERE state <> 'removed'")))
    for version in versions:
        for name, _columns, _key, indexes in _TABLES:
            part = f"{name}_v{int(version)}"
            op.execute(f"CREATE TABLE IF NOT EXISTS {_q(part)} "
                       f"(LIKE {_q(name)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            op.execute(f"ALTER TABLE {_q(name)} ATTACH PARTITION {_q(part)} FOR VALUES IN ({int(version)})")
            for index, cols in indexes:
                op.execute(f"CREATE INDEX IF NOT EXISTS {_q(f'{index}_v{int(version)}')} ON {_q(part)} "
                           f"({', '.join(_q(c) for c in cols)})")


def downgrade() -> None:
    for name, _columns, _key, _indexes in reversed(_TABLES):
        op.drop_table(name)  # with its partitions
    bind = op.get_bind()
    tables = ["customers"] if bind.dialect.name != "postgresql" else [r.relname for r in bind.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'customers' AND pg_table_is_visible(p.oid)"))]
    latest = _LATEST[bind.dialect.name]
    for table in tables:
        suffix = table.removeprefix("customers")
        op.execute(f"DROP INDEX IF EXISTS {_q(_CONTACT[0] + suffix)}")
        have = _indexes(bind, table)
        for old, (new, _columns, before) in _SORTS.items():
            if new + suffix in have:
                op.execute(f"DROP INDEX IF EXISTS {_q(new + suffix)}")
                _create(old + suffix, table, f"version, expert_id, {before.format(latest=latest)}")
    op.drop_column("customers", "archived")
    op.drop_column("customers", "last_contact_at")
