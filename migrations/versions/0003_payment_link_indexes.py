"""Indexes for linking payments to meetings by meeting and by the checkout's booking hints.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by 0001 as it stands has these already; older ones get them here
    op.create_index("ix_payments_meeting", "payments", ["version", "expert_id", "meeting_id"], if_not_exists=True)
    op.create_index("ix_payments_booking_hint", "payments", ["version", "hint_expert", "hint_email", "hint_start"],
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_payments_booking_hint", "payments")
    op.drop_index("ix_payments_meeting", "payments")
