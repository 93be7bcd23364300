"""push call marker: committed before each call to WeChat, so a row without it was never sent

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('call_started_at', storage.models.UTCDateTime(), nullable=True))
    # Rows a sender of the previous version holds may have reached WeChat (their markers were in
    # Redis): in doubt if that sender is gone, never back to pending.
    op.execute("UPDATE push_outbox SET call_started_at = claimed_at WHERE status = 'sending'")


def downgrade() -> None:
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.drop_column('call_started_at')
