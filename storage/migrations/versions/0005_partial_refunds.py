"""partial refunds: a purchase's refunds, once per refund number, and the amount refunded so far

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded_amount', sa.Numeric(precision=12, scale=2), server_default='0',
                                      nullable=False))
    # A purchase refunded before partial refunds existed was refunded in full.
    op.execute("UPDATE purchases SET refunded_amount = amount WHERE refunded_at IS NOT NULL")
    op.create_table('purchase_refunds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('purchase_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('refund_no', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('points_share', sa.BigInteger(), nullable=False),
    sa.Column('points_reversed', sa.BigInteger(), nullable=False),
    sa.Column('shortfall', sa.BigInteger(), nullable=False),
    sa.Column('points_expired', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_purchase_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_purchase_refunds_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_refunds')),
    sa.UniqueConstraint('purchase_id', 'refund_no', name='uq_purchase_refunds_purchase_refund_no')
    )


def downgrade() -> None:
    op.drop_table('purchase_refunds')
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_column('refunded_amount')
