"""Read-model tables (SQLAlchemy Core). The schema itself is created by Alembic migrations.

Every read-model table carries the projection `version` in its key, so that a replay can build
a new version beside the one serving readers and switch over in one update of
`projection_versions`. On PostgreSQL those tables are partitioned by `version`, and the `Index`
declarations below are built on each version's partition, not on the parent
(`projections.physical`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

metadata = MetaData()



class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, on PostgreSQL (timestamptz) and SQLite (text) alike."""

    impl = DateTime(timezone=True)
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
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


UTC = UTCDateTime()

class earliest_if_null(FunctionElement):
    """`coalesce(time, <before every time>)`: a nullable time as a sort key, NULL below every time.

    The constant is written into the SQL (not bound), so that PostgreSQL and SQLite match the
    query's expression to the index built on the same expression.
    """

    type = UTC
    name = "earliest_if_null"
    inherit_cache = True


@compiles(earliest_if_null, "postgresql")
def _earliest_pg(element, compiler, **kw):
    return f"coalesce({compiler.process(element.clauses, **kw)}, '-infinity'::timestamptz)"


@compiles(earliest_if_null)
def _earliest_sqlite(element, compiler, **kw):  # SQLite stores times as text: '' sorts below every one
    return f"coalesce({compiler.process(element.clauses, **kw)}, '')"


meetings = Table(
    "meetings",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("meeting_id", String(200), primary_key=True),
    Column("customer_id", String(64)),
    Column("customer_email", String(320)),
    Column("email_hash", String(64)),
    Column("customer_name", String(200)),
    Column("customer_phone", String(40)),
    Column("service_id", String(200)),
    Column("service_name", String(200)),
    Column("booked_start", UTC),
    Column("booked_end", UTC),
    Column("booked_timezone", String(64)),
    Column("created_version", String(80)),
    Column("resched_start", UTC),
    Column("resched_end", UTC),
    Column("resched_timezone", String(64)),
    Column("resched_version", String(80)),
    Column("start_time", UTC),
    Column("end_time", UTC),
    Column("timezone", String(64)),
    Column("price_amount", BigInteger),
    Column("price_currency", String(3)),
    Column("payment_intent_id", String(200)),
    Column("checkout_session_id", String(200)),
    Column("cancelled_at", UTC),
    Column("cancel_reason", Text),
    Column("cancelled_by", String(20)),
    Column("no_show_at", UTC),
    Column("booked_at", UTC),
    Column("first_seen_at", UTC),
    Index("ix_meetings_customer", "version", "expert_id", "customer_id"),
    Index("ix_meetings_pi", "version", "payment_intent_id"),
    Index("ix_meetings_cs", "version", "checkout_session_id"),
    Index("ix_meetings_booked", "version", "expert_id", "customer_email", "booked_start"),
    Index("ix_meetings_email_hash", "version", "email_hash"),
    # the sweep: meetings whose start or end passed since the last one
    Index("ix_meetings_start", "version", "start_time"),
    Index("ix_meetings_end", "version", "end_time"),
)

payments = Table(
    "payments",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("payment_id", String(200), primary_key=True),
    Column("payment_intent_id", String(200)),
    Column("checkout_session_id", String(200)),
    Column("charge_id", String(200)),
    Column("expert_id", String(200)),
    Column("meeting_id", String(200)),
    Column("customer_id", String(64)),
    Column("hint_expert", String(200)),
    Column("hint_meeting", String(200)),
    Column("hint_email", String(320)),
    Column("email_hash", String(64)),
    Column("hint_start", UTC),
    Column("state", JSON, nullable=False),
    Column("created_at", UTC),
    Column("undecided", Boolean),  # events alone cannot settle its figures: reconcile asks Stripe
    Index("ix_payments_customer", "version", "expert_id", "customer_id"),
    Index("ix_payments_cs", "version", "checkout_session_id"),
    Index("ix_payments_charge", "version", "charge_id"),
    Index("ix_payments_unlinked", "version", "hint_expert", "hint_meeting"),
    Index("ix_payments_email_hash", "version", "email_hash"),
    Index("ix_payments_meeting", "version", "expert_id", "meeting_id"),
    Index("ix_payments_booking_hint", "version", "hint_expert", "hint_email", "hint_start"),
)

# Every id Stripe may name a payment by (its intent, its checkout session, each of its charges),
# so that an event naming any of them finds the one payment row.
payment_aliases = Table(
    "payment_aliases",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("alias", String(200), primary_key=True),
    Column("payment_id", String(200), nullable=False),
    Index("ix_payment_aliases_payment", "version", "payment_id"),
)

customers = Table(
    "customers",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("customer_id", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_hash", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("phone", String(40)),
    Column("search_text", Text, nullable=False),
    Column("first_seen_at", UTC, nullable=False),
    Column("appointments", Integer, nullable=False),
    Column("cancelled", Integer, nullable=False),
    Column("no_shows", Integer, nullable=False),
    # as of the version's `swept_until` (see projections.sweep)
    Column("upcoming", Integer, nullable=False),
    Column("past", Integer, nullable=False),
    Column("last_appointment_at", UTC),
    Column("next_appointment_at", UTC),
    Column("session_minutes", Integer, nullable=False),
    Column("spend", JSON, nullable=False),
    Column("spend_sort", BigInteger, nullable=False),
    Column("revenue", JSON, nullable=False),
    Column("refunded", JSON, nullable=False),
    # the created_version of the booking the name/email and the phone were taken from
    Column("profile_version", String(80)),
    Column("phone_version", String(80)),
    # from the expert's profile of the customer; every sort index starts with it, so that the list
    # (archived=false by default) is one range of the sort's index either way
    Column("archived", Boolean, nullable=False, server_default=false()),
    Column("last_contact_at", UTC),  # from the profile: the newest communication
    Column("first_appointment_at", UTC),  # the earliest start of an appointment not cancelled
    # new | active | lapsed | archived, as of `swept_until` (projections.rules.status)
    Column("status", String(10), nullable=False, server_default="new"),
    # a look-up by email, and the count of a list page (archived inside: an index-only scan)
    Index("ix_customers_email_a", "version", "expert_id", "email", "archived"),
    Index("ix_customers_email_hash", "version", "email_hash"),
)

# The default sort (the newest appointment first) is a range of this index, with no sort step. Every
# update of a customer that is not HOT writes an entry in each of the table's indexes, so the
# other sorts have none: they order the expert's rows, found by this same index (README, "Indexes").
Index("ix_customers_latest_a", customers.c.version, customers.c.expert_id, customers.c.archived,
      earliest_if_null(customers.c.last_appointment_at), customers.c.customer_id)
# A status filter (`status=lapsed`) in the default sort is a range of this one. The status changes
# seldom (a first visit, a return, a lapse), so it costs few index writes.
Index("ix_customers_status", customers.c.version, customers.c.expert_id, customers.c.status,
      earliest_if_null(customers.c.last_appointment_at), customers.c.customer_id)

notes = Table(
    "notes",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("note_id", String(64), primary_key=True),
    Column("expert_id", String(200), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTC, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Index("ix_notes_customer", "version", "expert_id", "customer_id"),
)

# Stripe event ids applied (once each), also what `customers reconcile` compares against.
stripe_events_applied = Table(
    "stripe_events_applied",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("applied_at", UTC, nullable=False),
)

# Source positions applied, written in the same transaction as the rows above.
projection_offsets = Table(
    "projection_offsets",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("event_time", UTC),
)

# Per version and scope (an expert, `p:<payment id>`, `r:<provider email id>`): bumped by every
# writer of the scope's rows; a worker holding them checks it before it writes (`projections.fences`).
projection_generations = Table(
    "projection_generations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("scope", String(300), primary_key=True),
    Column("generation", BigInteger, nullable=False),
    postgresql_with={"fillfactor": 70},
)

# Which version readers see; a replay switches it in one update.
projection_versions = Table(
    "projection_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("state", String(20), nullable=False),  # building | live | retired
    Column("consumer_group", String(255), nullable=False),
    Column("created_at", UTC, nullable=False),
    Column("switched_at", UTC),
    # the rows of this version count appointments as of this time (NULL: before every meeting)
    Column("swept_until", UTC),
)

# Keyed hashes of erased emails; consulted by every version, never versioned.
erasures = Table(
    "erasures",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("erased_at", UTC, nullable=False),
)

# What an erasure removed that carries no email of its own (meetings, payments, customer ids),
# so that later events or a replay cannot bring those rows back. Not versioned.
erased_refs = Table(
    "erased_refs",
    metadata,
    Column("kind", String(20), primary_key=True),  # meeting | payment | customer
    Column("ref", String(420), primary_key=True),
    Column("erased_at", UTC, nullable=False),
)

# --- the relationship: custom fields, tags, archive (the expert's own data on a customer) -------

# The expert's custom field definitions, replaced whole by each `fields.defined` command.
field_definitions = Table(
    "field_definitions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("definitions", JSON, nullable=False),  # [{key, label, type, choices?}]
    Column("updated_at", UTC, nullable=False),
)

# What the expert keeps on one customer. Kept apart from `customers` (the summary of bookings and
# payments) so that it stands whatever order a replay meets commands and bookings in.
# One row per customer merged into another of the same expert (`projections.rules.merges`): the
# duplicate's own rows keep its id; the survivor's summary counts both. `added` is what the merge put
# on the survivor's profile (the duplicate's tags and the fields the survivor lacked), taken off again
# by an unmerge.
customer_merges = Table(
    "customer_merges",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("customer_id", String(64), primary_key=True),  # the duplicate
    Column("survivor_id", String(64), nullable=False),
    Column("email_hash", String(64), nullable=False),  # the duplicate's, for an erasure
    Column("merged_at", UTC, nullable=False),
    Column("added", JSON, nullable=False),  # {"tags": [...], "fields": {...}}
    Index("ix_customer_merges_survivor", "version", "expert_id", "survivor_id"),
    Index("ix_customer_merges_email_hash", "version", "email_hash"),
)

customer_profiles = Table(
    "customer_profiles",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("customer_id", String(64), primary_key=True),
    Column("email_hash", String(64), nullable=False),
    Column("tags", JSON, nullable=False),  # sorted, lower-case
    Column("fields", JSON, nullable=False),  # {key: value}; values of removed definitions are kept
    Column("archived", Boolean, nullable=False),
    Column("last_contact_at", UTC),  # the newest communication's time
    Column("updated_at", UTC, nullable=False),
    Index("ix_customer_profiles_email_hash", "version", "email_hash"),
)

# One row per (customer, tag) and per (customer, field value): the list's filters are look-ups of
# these primary keys (`tag=vip`: the customers of that expert with that tag), derived from the
# profiles on every change.
customer_tags = Table(
    "customer_tags",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("tag", String(40), primary_key=True),
    Column("customer_id", String(64), primary_key=True),
)

customer_field_values = Table(
    "customer_field_values",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("key", String(40), primary_key=True),
    Column("value", String(500), primary_key=True),  # `customers.commands.canonical`
    Column("customer_id", String(64), primary_key=True),
)

# --- communications: what the platform sent a customer, and what the expert logged --------------

communications = Table(
    "communications",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("communication_id", String(64), primary_key=True),
    Column("expert_id", String(200), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("email_hash", String(64), nullable=False),
    Column("source", String(10), nullable=False),  # platform | expert
    Column("channel", String(20), nullable=False),  # email | sms | phone | message | in_person
    Column("kind", String(20)),  # the platform's: confirmation | reminder | ...
    Column("subject", String(300)),
    Column("summary", Text),  # the expert's own words on what was said
    Column("at", UTC, nullable=False),
    Column("meeting_id", String(200)),
    Column("provider_message_id", String(200)),
    Column("status", String(20)),  # of a platform message, from its delivery reports
    Index("ix_communications_customer", "version", "expert_id", "customer_id", "at"),
    Index("ix_communications_provider", "version", "provider_message_id"),
    Index("ix_communications_email_hash", "version", "email_hash"),
)

# The email provider's delivery reports, by its email id, whether or not their message came yet.
email_reports = Table(
    "email_reports",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("email_id", String(200), primary_key=True),
    Column("reports", JSON, nullable=False),  # [[status, at], ...], each once, in order
)

# --- insights: the expert's figures by month, kept by the worker ----------------------------------

# Sums of the customers' contributions (`projections.rules.insights`): one row per (month, metric,
# dimension); the insights page reads a range of months of one expert.
insight_counts = Table(
    "insight_counts",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("month", String(7), primary_key=True),  # YYYY-MM, UTC
    Column("metric", String(16), primary_key=True),
    Column("dim", String(250), primary_key=True),  # a currency, a service id, days of a gap, or ""
    Column("value", BigInteger, nullable=False),
    Column("label", String(200)),  # a service's name
)

# What each customer adds to those sums now, so that a change adds only the difference.
customer_insights = Table(
    "customer_insights",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("expert_id", String(200), primary_key=True),
    Column("customer_id", String(64), primary_key=True),
    Column("contribution", JSON, nullable=False),  # [[month, metric, dim, value], ...]
)
