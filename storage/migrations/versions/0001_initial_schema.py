"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 00:04:06.859278
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff')),
    sa.UniqueConstraint('openid', name=op.f('uq_staff_openid'))
    )
    op.create_table('members',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_no', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('birthday', sa.Date(), nullable=True),
    sa.Column('birthday_md', sa.SmallInteger(), nullable=True),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('manager_id', sa.String(length=32), nullable=True),
    sa.Column('openid', sa.String(length=64), nullable=True),
    sa.Column('bound_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('subscribed', sa.Boolean(), nullable=False),
    sa.Column('opted_out', sa.Boolean(), nullable=False),
    sa.Column('unreachable', sa.Boolean(), nullable=False),
    sa.Column('points_balance', sa.BigInteger(), nullable=False),
    sa.Column('segment', sa.String(length=16), nullable=True),
    sa.Column('activity', sa.String(length=16), nullable=True),
    sa.Column('evaluated_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('retention_grace_until', sa.Date(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('points_balance >= 0', name=op.f('ck_members_balance_not_negative')),
    sa.ForeignKeyConstraint(['manager_id'], ['staff.id'], name=op.f('fk_members_manager_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_members')),
    sa.UniqueConstraint('card_no', name=op.f('uq_members_card_no')),
    sa.UniqueConstraint('openid', name=op.f('uq_members_openid'))
    )
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index('ix_members_birthday_md', ['birthday_md'], unique=False)

    op.create_table('ledger',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('occurred_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=96), nullable=True),
    sa.CheckConstraint("kind = 'earn' OR remaining = 0", name=op.f('ck_ledger_remaining_only_on_earn')),
    sa.CheckConstraint("kind IN ('earn', 'redeem', 'expire', 'adjust', 'reverse')", name=op.f('ck_ledger_kind_known')),
    sa.CheckConstraint('remaining <= amount OR remaining = 0', name=op.f('ck_ledger_remaining_within_amount')),
    sa.CheckConstraint('remaining >= 0', name=op.f('ck_ledger_remaining_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ledger_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_idempotency_key'))
    )
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_expires_on', ['expires_on'], unique=False)
        batch_op.create_index('ix_ledger_member_id_expires_on', ['member_id', 'expires_on'], unique=False)
        batch_op.create_index('ix_ledger_member_id_id', ['member_id', 'id'], unique=False)

    op.create_table('member_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_changes_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_changes'))
    )
    with op.batch_alter_table('member_changes', schema=None) as batch_op:
        batch_op.create_index('ix_member_changes_member_id_id', ['member_id', 'id'], unique=False)

    op.create_table('purchases',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('receipt_no', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('purchased_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('store', sa.String(length=64), nullable=False),
    sa.Column('points_earned', sa.BigInteger(), nullable=False),
    sa.Column('refunded_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_purchases_amount_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_purchases_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchases')),
    sa.UniqueConstraint('receipt_no', name=op.f('uq_purchases_receipt_no'))
    )
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.create_index('ix_purchases_member_id_purchased_at', ['member_id', 'purchased_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_index('ix_purchases_member_id_purchased_at')

    op.drop_table('purchases')
    with op.batch_alter_table('member_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_member_changes_member_id_id')

    op.drop_table('member_changes')
    with op.batch_alter_table('ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_member_id_id')
        batch_op.drop_index('ix_ledger_member_id_expires_on')
        batch_op.drop_index('ix_ledger_expires_on')

    op.drop_table('ledger')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_birthday_md')

    op.drop_table('members')
    op.drop_table('staff')
