"""dashboard: a partial index of the earn lots with points left, by their last day (points expiring soon)

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

OPEN_LOT = "kind = 'earn' AND remaining > 0"


def upgrade() -> None:
    op.create_index('ix_ledger_open_lots', 'ledger', ['expires_on', 'member_id', 'remaining'], unique=False,
                    sqlite_where=sa.text(OPEN_LOT), postgresql_where=sa.text(OPEN_LOT))


def downgrade() -> None:
    op.drop_index('ix_ledger_open_lots', table_name='ledger')
