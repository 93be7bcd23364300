"""gifts: stock, redemptions with codes and status history, entitlements

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gift_stock',
    sa.Column('gift_id', sa.String(length=32), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('reserved', sa.Integer(), nullable=False),
    sa.Column('handed_over', sa.Integer(), nullable=False),
    sa.Column('updated_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('handed_over >= 0', name=op.f('ck_gift_stock_handed_over_not_negative')),
    sa.CheckConstraint('reserved <= stock', name=op.f('ck_gift_stock_reserved_within_stock')),
    sa.CheckConstraint('reserved >= 0', name=op.f('ck_gift_stock_reserved_not_negative')),
    sa.PrimaryKeyConstraint('gift_id', name=op.f('pk_gift_stock'))
    )
    op.create_table('gift_stock_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('gift_id', sa.String(length=32), nullable=False),
    sa.Column('change', sa.Integer(), nullable=False),
    sa.Column('stock_after', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', storage.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gift_stock_changes'))
    )
    op.create_table('gift_entitlements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('redemption_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_gift_entitlements_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gift_entitlements')),
    sa.UniqueConstraint('member_id', 'source', name='uq_gift_entitlements_member_source'),
    sa.UniqueConstraint('redemption_id', name=op.f('uq_gift_entitlements_redemption_id'))
    )
    with op.batch_alter_table('gift_entitlements', schema=None) as batch_op:
        batch_op.create_index('ix_gift_entitlements_member_id_used', ['member_id', 'redemption_id'], unique=False)

    op.create_table('gift_redemptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('gift_id', sa.String(length=32), nullable=False),
    sa.Column('gift_name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('fulfilment', sa.String(length=8), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('mail_name', sa.String(length=64), nullable=True),
    sa.Column('mail_phone', sa.String(length=32), nullable=True),
    sa.Column('mail_address', sa.String(length=200), nullable=True),
    sa.Column('tracking', sa.String(length=200), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=True),
    sa.Column('closed_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('open', 'collected', 'mailed', 'cancelled', 'expired')", name=op.f('ck_gift_redemptions_status_known')),
    sa.CheckConstraint('points >= 0', name=op.f('ck_gift_redemptions_points_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_gift_redemptions_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gift_redemptions')),
    sa.UniqueConstraint('code', name=op.f('uq_gift_redemptions_code'))
    )
    with op.batch_alter_table('gift_redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_gift_redemptions_member_id_gift_id', ['member_id', 'gift_id'], unique=False)
        batch_op.create_index('ix_gift_redemptions_status_valid_until', ['status', 'valid_until'], unique=False)

    op.create_table('gift_redemption_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('redemption_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_status', sa.String(length=10), nullable=True),
    sa.Column('to_status', sa.String(length=10), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['redemption_id'], ['gift_redemptions.id'], name=op.f('fk_gift_redemption_events_redemption_id_gift_redemptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gift_redemption_events'))
    )
    with op.batch_alter_table('gift_redemption_events', schema=None) as batch_op:
        batch_op.create_index('ix_gift_redemption_events_redemption_id_id', ['redemption_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('gift_redemption_events', schema=None) as batch_op:
        batch_op.drop_index('ix_gift_redemption_events_redemption_id_id')

    op.drop_table('gift_redemption_events')
    with op.batch_alter_table('gift_redemptions', schema=None) as batch_op:
        batch_op.drop_index('ix_gift_redemptions_status_valid_until')
        batch_op.drop_index('ix_gift_redemptions_member_id_gift_id')

    op.drop_table('gift_redemptions')
    with op.batch_alter_table('gift_entitlements', schema=None) as batch_op:
        batch_op.drop_index('ix_gift_entitlements_member_id_used')

    op.drop_table('gift_entitlements')
    op.drop_table('gift_stock_changes')
    op.drop_table('gift_stock')
