"""push settlement: the msgid a send returned, and when WeChat's finish event settled the push

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('msgid', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('settled_at', storage.models.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_push_outbox_msgid', ['msgid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_push_outbox_msgid')
        batch_op.drop_column('settled_at')
        batch_op.drop_column('msgid')
