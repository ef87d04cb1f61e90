"""Appointment counts are stored, as of each version's sweep watermark.

`customers` gains `upcoming`, `past`, `last_appointment_at`, `next_appointment_at` and
`session_minutes`, and loses `schedule` (counted at read time until now) and `latest_start`
(the old sort key, upcoming appointments included); `ix_customers_latest` now orders by
`last_appointment_at` (NULL below every time). `projection_versions.swept_until` is the time the
rows count as of; `ix_meetings_start` and `ix_meetings_end` serve the sweep. Existing rows are
counted here, from their `schedule`, as of the time of the migration, which becomes every
version's watermark; the worker's sweeps carry on from it.

Revision ID: 0006
Revises: 0005
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = ("version", "expert_id", "customer_id")
CHUNK = 2000


class _UTC(sa.TypeDecorator):
    """Aware UTC datetimes in and out, stored as the service stores them (naive UTC text on SQLite)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


UTC = _UTC()


def _latest_index() -> None:
    """`ix_customers_latest` on `last_appointment_at`, NULL below every time (the list's sort)."""
    if op.get_bind().dialect.name == "postgresql":
        latest = sa.text("coalesce(last_appointment_at, '-infinity'::timestamptz)")
    else:  # SQLite stores times as text: '' sorts below every one
        latest = sa.text("coalesce(last_appointment_at, '')")
    op.create_index("ix_customers_latest", "customers", ["version", "expert_id", latest, "customer_id"])


def _customers(*extra: sa.Column) -> sa.TableClause:
    return sa.table("customers", sa.column("version", sa.Integer), sa.column("expert_id", sa.String),
                    sa.column("customer_id", sa.String), *extra)


def _counts(schedule: list, now: datetime) -> dict:
    """What the list showed from a stored schedule at `now` (the rule the read side applied)."""
    upcoming = past = minutes = 0
    last = nxt = None
    for start_s, end_s, no_show in schedule:
        start, end = datetime.fromisoformat(start_s), datetime.fromisoformat(end_s)
        if start > now:
            upcoming += 1
            nxt = start if nxt is None or start < nxt else nxt
        else:
            past += 1
            last = start if last is None or start > last else last
            if end <= now and not no_show:
                minutes += int((end - start).total_seconds() // 60)
    return {"upcoming": upcoming, "past": past, "last_appointment_at": last, "next_appointment_at": nxt,
            "session_minutes": minutes}


def _backfill(bind, now: datetime) -> None:
    old = _customers(sa.column("schedule", sa.JSON))
    new = _customers(sa.column("upcoming", sa.Integer), sa.column("past", sa.Integer),
                     sa.column("last_appointment_at", UTC), sa.column("next_appointment_at", UTC),
                     sa.column("session_minutes", sa.Integer))
    keys = [old.c[k] for k in KEY]
    statement = new.update().where(*[new.c[k] == sa.bindparam(f"k_{k}") for k in KEY])
    after = None
    while True:
        query = sa.select(*keys, old.c.schedule).order_by(*keys).limit(CHUNK)
        if after is not None:
            query = query.where(sa.tuple_(*keys) > sa.tuple_(*after))
        rows = bind.execute(query).all()
        if not rows:
            return
        bind.execute(statement, [{**{f"k_{k}": getattr(r, k) for k in KEY}, **_counts(r.schedule or [], now)}
                                 for r in rows])
        after = tuple(rows[-1][:3])


def upgrade() -> None:
    # a database made by 0001 as it stands has these already; older ones get them here
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "swept_until" not in {c["name"] for c in inspector.get_columns("projection_versions")}:
        op.add_column("projection_versions", sa.Column("swept_until", sa.DateTime(timezone=True)))
    if "latest_start" in {c["name"] for c in inspector.get_columns("customers")}:
        now = datetime.now(timezone.utc)
        for name in ("upcoming", "past", "session_minutes"):
            op.add_column("customers", sa.Column(name, sa.Integer, nullable=False, server_default="0"))
        for name in ("last_appointment_at", "next_appointment_at"):
            op.add_column("customers", sa.Column(name, sa.DateTime(timezone=True)))
        _backfill(bind, now)
        op.drop_index("ix_customers_latest", "customers")
        op.drop_column("customers", "latest_start")
        op.drop_column("customers", "schedule")
        _latest_index()
        pv = sa.table("projection_versions", sa.column("swept_until", UTC))
        bind.execute(pv.update().where(pv.c.swept_until.is_(None)).values(swept_until=now))
    op.create_index("ix_meetings_start", "meetings", ["version", "start_time"], if_not_exists=True)
    op.create_index("ix_meetings_end", "meetings", ["version", "end_time"], if_not_exists=True)


def downgrade() -> None:
    """Back to `schedule` and `latest_start`, rebuilt from the meetings."""
    bind = op.get_bind()
    op.drop_index("ix_meetings_end", "meetings")
    op.drop_index("ix_meetings_start", "meetings")
    op.add_column("customers", sa.Column("latest_start", sa.DateTime(timezone=True)))
    op.add_column("customers", sa.Column("schedule", sa.JSON, nullable=False, server_default="[]"))
    m = sa.table("meetings", sa.column("version", sa.Integer), sa.column("expert_id", sa.String),
                 sa.column("customer_id", sa.String), sa.column("created_version", sa.String),
                 sa.column("start_time", UTC), sa.column("end_time", UTC), sa.column("cancelled_at", UTC),
                 sa.column("no_show_at", UTC)).c
    found: dict[tuple, list] = {}
    for r in bind.execute(sa.select(m.version, m.expert_id, m.customer_id, m.start_time, m.end_time,
                                    m.cancelled_at, m.no_show_at)
                          .where(m.customer_id.is_not(None), m.created_version.is_not(None))):
        found.setdefault((r.version, r.expert_id, r.customer_id), []).append(r)
    rows = _customers(sa.column("latest_start", UTC), sa.column("schedule", sa.JSON))
    statement = rows.update().where(*[rows.c[k] == sa.bindparam(f"k_{k}") for k in KEY])
    values = []
    for key, meetings in found.items():
        active = [r for r in meetings if r.cancelled_at is None]
        values.append({**{f"k_{k}": v for k, v in zip(KEY, key)},
                       "latest_start": max(r.start_time for r in (active or meetings)),
                       "schedule": sorted([r.start_time.isoformat(), r.end_time.isoformat(), r.no_show_at is not None]
                                          for r in active)})
    for i in range(0, len(values), CHUNK):
        bind.execute(statement, values[i:i + CHUNK])
    op.drop_index("ix_customers_latest", "customers")
    op.create_index("ix_customers_latest", "customers", ["version", "expert_id", "latest_start", "customer_id"])
    for name in ("upcoming", "past", "session_minutes", "last_appointment_at", "next_appointment_at"):
        op.drop_column("customers", name)
    op.drop_column("projection_versions", "swept_until")
