"""tier hold: where a tier came from and since when, spend carried in by imports, downgrade warnings

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier_source', sa.String(length=8), server_default='earned', nullable=False))
        batch_op.add_column(sa.Column('tier_since', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('carried_spend', sa.Numeric(precision=12, scale=2), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('carried_spend_since', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('downgrade_warned_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        for column in ('downgrade_warned_on', 'carried_spend_since', 'carried_spend', 'tier_since', 'tier_source'):
            batch_op.drop_column(column)
