"""Customer status: `customers` gains `first_appointment_at` and `status`, and the status's index.

`status` is new | active | lapsed | archived as of the version's sweep watermark
(`projections.rules.status`). Existing rows get their first appointment from their meetings and
their status from the default thresholds (30 and 90 days); the worker keeps both from then on, and
a customer's status follows other thresholds from their next change or sweep (a replay recomputes
every one). The index `(version, expert_id, status, <last appointment>, customer_id)` makes a status
filter in the default sort one index range; partitions without the readers' indexes (a version
still being replayed) get it with the others when they are built.

Revision ID: 0013
Revises: 0012
"""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NEW_DAYS, ACTIVE_DAYS = 30, 90
_EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)
_LATEST = {"postgresql": "coalesce(last_appointment_at, '-infinity'::timestamptz)",
           "sqlite": "coalesce(last_appointment_at, '')"}


def _q(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


def _cut(as_of: datetime, days: int, postgres: bool) -> datetime:
    cut = as_of - timedelta(days=days) if as_of - _EARLIEST > timedelta(days=days) else _EARLIEST
    return cut if postgres else cut.astimezone(timezone.utc).replace(tzinfo=None)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    have = {c["name"] for c in sa.inspect(bind).get_columns("customers")}
    if "first_appointment_at" not in have:
        op.add_column("customers", sa.Column("first_appointment_at", sa.DateTime(timezone=True)))
    if "status" not in have:
        op.add_column("customers", sa.Column("status", sa.String(10), nullable=False, server_default="new"))
    op.execute("UPDATE customers SET first_appointment_at = (SELECT min(m.start_time) FROM meetings m "
               "WHERE m.version = customers.version AND m.expert_id = customers.expert_id "
               "AND m.customer_id = customers.customer_id AND m.created_version IS NOT NULL "
               "AND m.cancelled_at IS NULL)")
    status = sa.text(
        "UPDATE customers SET status = CASE WHEN archived THEN 'archived' "
        "WHEN first_appointment_at > :new_cut THEN 'new' "
        "WHEN upcoming > 0 OR last_appointment_at > :active_cut THEN 'active' ELSE 'lapsed' END "
        "WHERE version = :version").bindparams(sa.bindparam("new_cut", type_=sa.DateTime(timezone=postgres)),
                                              sa.bindparam("active_cut", type_=sa.DateTime(timezone=postgres)))
    for row in bind.execute(sa.text("SELECT version, swept_until FROM projection_versions")).all():
        as_of = row.swept_until or _EARLIEST
        if isinstance(as_of, str):  # SQLite hands the text back
            as_of = datetime.fromisoformat(as_of)
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
        bind.execute(status, {"version": row.version, "new_cut": _cut(as_of, NEW_DAYS, postgres),
                              "active_cut": _cut(as_of, ACTIVE_DAYS, postgres)})
    columns = f"version, expert_id, status, {_LATEST[bind.dialect.name]}, customer_id"
    if not postgres:
        op.execute(f"CREATE INDEX ix_customers_status ON customers ({columns})")  # as the model compiles it
        return
    indexes = {r.indexname for r in bind.execute(sa.text("SELECT indexname FROM pg_indexes"))}
    for row in bind.execute(sa.text("SELECT version FROM projection_versions WHERE state <> 'removed'")).all():
        suffix = f"_v{int(row.version)}"
        if "ix_customers_latest_a" + suffix in indexes:  # the readers' indexes are there: this one too
            op.execute(f"CREATE INDEX IF NOT EXISTS {_q('ix_customers_status' + suffix)} "
                       f"ON {_q('customers' + suffix)} ({columns})")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_customers_status")
    op.drop_column("customers", "status")
    op.drop_column("customers", "first_appointment_at")
