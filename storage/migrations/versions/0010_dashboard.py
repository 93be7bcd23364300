"""dashboard: staff passwords and lockout, sign-in sessions, indexes for the panels' month ranges

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))
    op.create_table(
        'admin_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('staff_id', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_admin_sessions_staff_id_staff')),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_admin_sessions')),
    )
    op.create_index('ix_admin_sessions_staff_id', 'admin_sessions', ['staff_id'], unique=False)
    op.create_index('ix_ledger_occurred_at', 'ledger', ['occurred_at', 'kind', 'amount'], unique=False)
    op.create_index('ix_member_changes_action_at', 'member_changes', ['action', 'at'], unique=False)
    op.create_index('ix_push_outbox_created_at', 'push_outbox', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_push_outbox_created_at', table_name='push_outbox')
    op.drop_index('ix_member_changes_action_at', table_name='member_changes')
    op.drop_index('ix_ledger_occurred_at', table_name='ledger')
    op.drop_index('ix_admin_sessions_staff_id', table_name='admin_sessions')
    op.drop_table('admin_sessions')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
        batch_op.drop_column('password_hash')
