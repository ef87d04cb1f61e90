"""The read model: meetings, payments, customers, notes, offsets, versions, erasures.

The tables as a new database has had them since revision 0007: besides the first columns, they
hold what 0003 (`ix_payments_meeting`, `ix_payments_booking_hint`), 0005 (`payments.undecided`),
0006 (the stored appointment counts, `projection_versions.swept_until`, `ix_meetings_start`,
`ix_meetings_end`, `ix_customers_latest` on `last_appointment_at`) and 0007
(`customers.profile_version`, `phone_version`) bring to databases made before them; those
revisions leave a database that has them as it is. Stated here once and for all: a change to the
tables is a new revision, never an edit of this one.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("meetings", "payments", "customers", "notes", "stripe_events_applied", "projection_offsets",
          "projection_versions", "erasures")

UTC = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL; on SQLite the service writes UTC text


def _earliest_if_null(column: str) -> sa.TextClause:
    """A nullable time as a sort key, NULL below every time (the service's queries use the same
    expression, so the index serves them)."""
    if op.get_bind().dialect.name == "postgresql":
        return sa.text(f"coalesce({column}, '-infinity'::timestamptz)")
    return sa.text(f"coalesce({column}, '')")  # SQLite stores times as text: '' sorts below every one


def _indexes(table: str, **indexes: list) -> None:
    for name, columns in indexes.items():
        op.create_index(name, table, columns)


def upgrade() -> None:
    op.create_table(
        "meetings",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("expert_id", sa.String(200), primary_key=True),
        sa.Column("meeting_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("customer_email", sa.String(320)),
        sa.Column("email_hash", sa.String(64)),
        sa.Column("customer_name", sa.String(200)),
        sa.Column("customer_phone", sa.String(40)),
        sa.Column("service_id", sa.String(200)),
        sa.Column("service_name", sa.String(200)),
        sa.Column("booked_start", UTC),
        sa.Column("booked_end", UTC),
        sa.Column("booked_timezone", sa.String(64)),
        sa.Column("created_version", sa.String(80)),
        sa.Column("resched_start", UTC),
        sa.Column("resched_end", UTC),
        sa.Column("resched_timezone", sa.String(64)),
        sa.Column("resched_version", sa.String(80)),
        sa.Column("start_time", UTC),
        sa.Column("end_time", UTC),
        sa.Column("timezone", sa.String(64)),
        sa.Column("price_amount", sa.BigInteger),
        sa.Column("price_currency", sa.String(3)),
        sa.Column("payment_intent_id", sa.String(200)),
        sa.Column("checkout_session_id", sa.String(200)),
        sa.Column("cancelled_at", UTC),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("cancelled_by", sa.String(20)),
        sa.Column("no_show_at", UTC),
        sa.Column("booked_at", UTC),
        sa.Column("first_seen_at", UTC),
    )
    _indexes(
        "meetings",
        ix_meetings_customer=["version", "expert_id", "customer_id"],
        ix_meetings_pi=["version", "payment_intent_id"],
        ix_meetings_cs=["version", "checkout_session_id"],
        ix_meetings_booked=["version", "expert_id", "customer_email", "booked_start"],
        ix_meetings_email_hash=["version", "email_hash"],
        ix_meetings_start=["version", "start_time"],
        ix_meetings_end=["version", "end_time"],
    )

    op.create_table(
        "payments",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("payment_id", sa.String(200), primary_key=True),
        sa.Column("payment_intent_id", sa.String(200)),
        sa.Column("checkout_session_id", sa.String(200)),
        sa.Column("charge_id", sa.String(200)),
        sa.Column("expert_id", sa.String(200)),
        sa.Column("meeting_id", sa.String(200)),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("hint_expert", sa.String(200)),
        sa.Column("hint_meeting", sa.String(200)),
        sa.Column("hint_email", sa.String(320)),
        sa.Column("email_hash", sa.String(64)),
        sa.Column("hint_start", UTC),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("created_at", UTC),
        sa.Column("undecided", sa.Boolean),
    )
    _indexes(
        "payments",
        ix_payments_customer=["version", "expert_id", "customer_id"],
        ix_payments_cs=["version", "checkout_session_id"],
        ix_payments_charge=["version", "charge_id"],
        ix_payments_unlinked=["version", "hint_expert", "hint_meeting"],
        ix_payments_email_hash=["version", "email_hash"],
        ix_payments_meeting=["version", "expert_id", "meeting_id"],
        ix_payments_booking_hint=["version", "hint_expert", "hint_email", "hint_start"],
    )

    op.create_table(
        "customers",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("expert_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(40)),
        sa.Column("search_text", sa.Text, nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("appointments", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Integer, nullable=False),
        sa.Column("no_shows", sa.Integer, nullable=False),
        sa.Column("upcoming", sa.Integer, nullable=False),
        sa.Column("past", sa.Integer, nullable=False),
        sa.Column("last_appointment_at", UTC),
        sa.Column("next_appointment_at", UTC),
        sa.Column("session_minutes", sa.Integer, nullable=False),
        sa.Column("spend", sa.JSON, nullable=False),
        sa.Column("spend_sort", sa.BigInteger, nullable=False),
        sa.Column("revenue", sa.JSON, nullable=False),
        sa.Column("refunded", sa.JSON, nullable=False),
        sa.Column("profile_version", sa.String(80)),
        sa.Column("phone_version", sa.String(80)),
    )
    _indexes(
        "customers",
        ix_customers_first_seen=["version", "expert_id", "first_seen_at", "customer_id"],
        ix_customers_name=["version", "expert_id", "name", "customer_id"],
        ix_customers_appts=["version", "expert_id", "appointments", "customer_id"],
        ix_customers_spend=["version", "expert_id", "spend_sort", "customer_id"],
        ix_customers_email=["version", "expert_id", "email"],
        ix_customers_email_hash=["version", "email_hash"],
        ix_customers_latest=["version", "expert_id", _earliest_if_null("last_appointment_at"), "customer_id"],
    )

    op.create_table(
        "notes",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("note_id", sa.String(64), primary_key=True),
        sa.Column("expert_id", sa.String(200), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    _indexes("notes", ix_notes_customer=["version", "expert_id", "customer_id"])

    op.create_table(
        "stripe_events_applied",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("applied_at", UTC, nullable=False),
    )
    op.create_table(
        "projection_offsets",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("event_time", UTC),
    )
    op.create_table(
        "projection_versions",
        # a lone integer key: SERIAL on PostgreSQL (its sequence is never used, versions are chosen)
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("switched_at", UTC),
        sa.Column("swept_until", UTC),
    )
    op.create_table(
        "erasures",
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("erased_at", UTC, nullable=False),
    )

    if op.get_bind().dialect.name == "postgresql":
        # substring search on name/email for one expert without scanning meetings
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_customers_search_trgm "
            "ON customers USING gin (search_text gin_trgm_ops)"
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
