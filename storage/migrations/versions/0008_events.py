"""events: the seats of each event session, and members' sign-ups (bookings and waitlist places)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
import storage.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('event_sessions',
    sa.Column('id', BigId, nullable=False),
    sa.Column('event_id', sa.String(length=24), nullable=False),
    sa.Column('session_key', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('starts_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('ends_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('place', sa.String(length=128), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('seats_taken', sa.Integer(), nullable=False),
    sa.Column('cancelled_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('seats_taken >= 0', name=op.f('ck_event_sessions_seats_not_negative')),
    sa.CheckConstraint('seats_taken <= capacity', name=op.f('ck_event_sessions_seats_within_capacity')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_sessions')),
    sa.UniqueConstraint('event_id', 'session_key', name='uq_event_sessions_event_session')
    )
    op.create_table('event_signups',
    sa.Column('id', BigId, nullable=False),
    sa.Column('session_id', BigId, nullable=False),
    sa.Column('event_id', sa.String(length=24), nullable=False),
    sa.Column('member_id', BigId, nullable=False),
    sa.Column('guests', sa.Integer(), nullable=False),
    sa.Column('party', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('live_event', sa.String(length=24), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(), nullable=False),
    sa.Column('booked_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('promoted_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('ended_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('checked_in_at', storage.models.UTCDateTime(), nullable=True),
    sa.Column('checked_in_by', sa.String(length=64), nullable=True),
    sa.CheckConstraint("status IN ('booked', 'waitlisted', 'cancelled', 'withdrawn', 'expired', 'called_off')",
                       name=op.f('ck_event_signups_status_known')),
    sa.CheckConstraint("(status IN ('booked', 'waitlisted')) = (live_event IS NOT NULL)",
                       name=op.f('ck_event_signups_live_when_live')),
    sa.CheckConstraint('guests >= 0 AND party = guests + 1', name=op.f('ck_event_signups_party_is_member_and_guests')),
    sa.CheckConstraint("checked_in_at IS NULL OR status NOT IN ('waitlisted', 'withdrawn', 'expired')", name=op.f('ck_event_signups_checked_in_never_waiting')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_event_signups_member_id_members')),
    sa.ForeignKeyConstraint(['session_id'], ['event_sessions.id'], name=op.f('fk_event_signups_session_id_event_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_signups')),
    sa.UniqueConstraint('code', name=op.f('uq_event_signups_code')),
    sa.UniqueConstraint('member_id', 'live_event', name='uq_event_signups_member_live_event')
    )
    with op.batch_alter_table('event_signups', schema=None) as batch_op:
        batch_op.create_index('ix_event_signups_event_id', ['event_id'], unique=False)
        batch_op.create_index('ix_event_signups_member_id', ['member_id'], unique=False)
        batch_op.create_index('ix_event_signups_session_id_status_priority_id',
                              ['session_id', 'status', 'priority', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event_signups', schema=None) as batch_op:
        batch_op.drop_index('ix_event_signups_session_id_status_priority_id')
        batch_op.drop_index('ix_event_signups_member_id')
        batch_op.drop_index('ix_event_signups_event_id')
    op.drop_table('event_signups')
    op.drop_table('event_sessions')
