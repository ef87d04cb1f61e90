"""Payments in Stripe's object model: every id a payment is known by, and payments to reconcile.

A payment intent can have several charges (a declined one, then one that succeeded); refunds,
disputes and fees name a charge. `payment_aliases` finds the payment by any of them.
Rows written before keep working (their state is read as one snapshot); `customers replay`
rebuilds them exactly.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by 0001 as it stands has these already; older ones get them here
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("payments")}
    if "undecided" not in have:
        op.add_column("payments", sa.Column("undecided", sa.Boolean()))
    if not sa.inspect(bind).has_table("payment_aliases"):
        op.create_table(
            "payment_aliases",
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("alias", sa.String(200), primary_key=True),
            sa.Column("payment_id", sa.String(200), nullable=False),
        )
        op.create_index("ix_payment_aliases_payment", "payment_aliases", ["version", "payment_id"])
        for column in ("payment_id", "payment_intent_id", "checkout_session_id", "charge_id"):
            op.execute(
                f"INSERT INTO payment_aliases (version, alias, payment_id) SELECT version, {column}, payment_id "
                f"FROM payments WHERE {column} IS NOT NULL ON CONFLICT DO NOTHING"
            )


def downgrade() -> None:
    op.drop_table("payment_aliases")
    op.drop_column("payments", "undecided")
