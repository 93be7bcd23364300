"""dashboard sign-in throttling per staff id and client address instead of locking the id

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_failures',
        sa.Column('staff_id', sa.String(length=32), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failed_at', sa.DateTime(), nullable=True),
        sa.Column('wait_until', sa.DateTime(), nullable=True),
        sa.CheckConstraint('failures >= 0', name=op.f('ck_login_failures_failures_not_negative')),
        sa.PrimaryKeyConstraint('staff_id', 'address', name=op.f('pk_login_failures')),
    )
    op.create_index('ix_login_failures_last_failed_at', 'login_failures', ['last_failed_at'], unique=False)
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')


def downgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))
    op.drop_index('ix_login_failures_last_failed_at', table_name='login_failures')
    op.drop_table('login_failures')
