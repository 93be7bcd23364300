"""SQLAlchemy 2.0 typed models. Invariants live here as constraints, not in hope."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Integer on SQLite keeps ROWID aliasing (fast autoincrement); BIGINT on PostgreSQL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, PostgreSQL gets the same values."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Staff(Base):
    """An account manager or service agent; receives alerts in WeChat when ``openid`` is set."""

    __tablename__ = "staff"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the staff id used in imports
    name: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="manager")  # manager | service | admin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("points_balance >= 0", name="balance_not_negative"),
        Index("ix_members_birthday_md", "birthday_md"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_no: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    birthday: Mapped[date | None] = mapped_column(Date)
    # month * 100 + day, indexed: a day's birthday audience is one index range, not a scan.
    birthday_md: Mapped[int | None] = mapped_column(SmallInteger)
    tier: Mapped[str] = mapped_column(String(16))
    # Where the tier came from: "earned" (purchases), "import" or "operator". A tier set by import or
    # by an operator holds for segments.window_days from tier_since unless purchases earn a higher one.
    tier_source: Mapped[str] = mapped_column(String(8), default="earned", server_default="earned")
    tier_since: Mapped[date | None] = mapped_column(Date)  # local date the tier was set
    # Spend made before the bot knew the member (an import's `spend`), counted while `carried_spend_since`
    # is inside the evaluation window.
    carried_spend: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=0, server_default="0")
    carried_spend_since: Mapped[date | None] = mapped_column(Date)
    downgrade_warned_on: Mapped[date | None] = mapped_column(Date)  # told a downgrade is coming (once per tier)
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)  # false after unfollow
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)  # no marketing pushes
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)  # WeChat refused delivery
    # Cached sum of the ledger, changed only in the ledger's own transactions (storage/ledger.py).
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    segment: Mapped[str | None] = mapped_column(String(16))  # upgrade | stable | retention | lapsed
    activity: Mapped[str | None] = mapped_column(String(16))  # active | swinging | trending | churned
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retention_grace_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One change to a member's points. Append-only: amounts are never edited.

    ``remaining`` is bookkeeping on earn lots only: how much of the lot is not yet spent or
    expired, so spending and expiry can consume the oldest points first.
    """

    __tablename__ = "ledger"
    __table_args__ = (
        CheckConstraint("kind IN ('earn', 'redeem', 'expire', 'adjust', 'reverse')", name="kind_known"),
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("kind = 'earn' OR remaining = 0", name="remaining_only_on_earn"),
        CheckConstraint("remaining <= amount OR remaining = 0", name="remaining_within_amount"),
        Index("ix_ledger_member_id_id", "member_id", "id"),
        Index("ix_ledger_member_id_expires_on", "member_id", "expires_on"),
        Index("ix_ledger_expires_on", "expires_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: earn > 0, redeem/expire/reverse < 0
    remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_on: Mapped[date | None] = mapped_column(Date)  # earn lots only
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reference: Mapped[str | None] = mapped_column(String(64))  # receipt no, gift id, job occasion
    note: Mapped[str | None] = mapped_column(Text)
    # Makes a retried operation a no-op: e.g. "purchase:R123", "opening:D0000001".
    idempotency_key: Mapped[str | None] = mapped_column(String(96), unique=True)


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_purchases_member_id_purchased_at", "member_id", "purchased_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    receipt_no: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    purchased_at: Mapped[datetime] = mapped_column(UTCDateTime)
    store: Mapped[str] = mapped_column(String(64))
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    # Sum of its refunds (purchase_refunds); spend counts amount - refunded_amount.
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=0, server_default="0")
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set when refunded in full
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurchaseRefund(Base):
    """One refund of (part of) a purchase, once per refund number: the store's retry changes nothing."""

    __tablename__ = "purchase_refunds"
    __table_args__ = (
        UniqueConstraint("purchase_id", "refund_no", name="uq_purchase_refunds_purchase_refund_no"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"))
    refund_no: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    points_share: Mapped[int] = mapped_column(BigInteger, default=0)  # the purchase's points this refund accounts for
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)  # already spent: could not be taken back
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)  # had expired: nothing to take back
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberChange(Base):
    """Audit trail: every change to a member record is traceable (seed 002 五.1)."""

    __tablename__ = "member_changes"
    __table_args__ = (Index("ix_member_changes_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    action: Mapped[str] = mapped_column(String(32))  # import, bind, unbind, unfollow, opt_out, tier ...
    detail: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))  # "openid:...", "cli", "api", "job:..."
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(Base):
    """One push to one recipient for one occasion of a job; the unique key makes it once only.

    status: pending → sending (claimed by a sender) → sent | failed | unreachable | unknown;
    or skipped (with the reason) when planned. ``unknown`` (in doubt): the sender died during
    the call, or the call timed out, so the message may have arrived; it is not sent again.
    WeChat's TEMPLATESENDJOBFINISH event then settles sent and unknown rows: ``delivered``, or
    ``failed`` with WeChat's status as the reason, at ``settled_at``.
    """

    __tablename__ = "push_outbox"
    __table_args__ = (
        UniqueConstraint("job", "occasion", "recipient", name="uq_push_outbox_key"),
        Index("ix_push_outbox_status_id", "status", "id"),
        Index("ix_push_outbox_job_occasion", "job", "occasion"),
        Index("ix_push_outbox_msgid", "msgid"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    occasion: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(64))  # "member:12" or "staff:M001:member:12"
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))  # the member it is about
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))  # set for staff alerts
    openid: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(64))  # a key of pushes.messages
    marketing: Mapped[bool] = mapped_column(Boolean, default=True)  # held in quiet hours
    tier: Mapped[str | None] = mapped_column(String(16))
    extra: Mapped[str | None] = mapped_column(Text)  # JSON: values for the text beyond the member's
    status: Mapped[str] = mapped_column(String(12), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    channel: Mapped[str | None] = mapped_column(String(8))  # template | custom
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when WeChat accepted the call
    msgid: Mapped[str | None] = mapped_column(String(32))  # what the send call returned (template messages)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when WeChat's finish event arrived


class JobRun(Base):
    """One run of a job for an occasion, for `push status`."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id", "job", "id"), Index("ix_job_runs_job_day", "job", "day"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    occasion: Mapped[str] = mapped_column(String(32))
    day: Mapped[date | None] = mapped_column(Date)  # the local day it ran for: a job runs at most once a day
    runner: Mapped[str] = mapped_column(String(64))  # host:pid, to see which scheduler ran it
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(Text)


class Voucher(Base):
    """A gift to collect in store (B-class birthdays)."""

    __tablename__ = "vouchers"
    __table_args__ = (UniqueConstraint("member_id", "occasion", name="uq_vouchers_member_occasion"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    occasion: Mapped[str] = mapped_column(String(32))
    valid_until: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------- events (DOMAIN.md: Events)


class EventSessionRow(Base):
    """The seats of one session of an event in config.yaml, created at its first sign-up.

    ``seats_taken`` changes only by conditional UPDATEs in storage/events.py, in the same
    transaction as the sign-up that takes or frees the seats; the CHECKs make overbooking
    impossible whatever the code does. ``starts_at``/``ends_at``/``place`` are what members were
    last told (a change in config.yaml is a move, told once by the event_changes job).
    """

    __tablename__ = "event_sessions"
    __table_args__ = (
        UniqueConstraint("event_id", "session_key", name="uq_event_sessions_event_session"),
        CheckConstraint("seats_taken >= 0", name="seats_not_negative"),
        CheckConstraint("seats_taken <= capacity", name="seats_within_capacity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(24))
    session_key: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(64))  # the event's title when the row was made (for removed events)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    place: Mapped[str] = mapped_column(String(128))
    capacity: Mapped[int] = mapped_column(Integer)
    seats_taken: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its sign-ups were called off then
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventSignup(Base):
    """One member's sign-up for one session: a booking or a place on its waitlist.

    status: booked | waitlisted (live) → cancelled (the member freed the seats), withdrawn (left
    the waitlist), expired (still waiting when the session started or was cancelled), called_off
    (a booking of a cancelled session). A waitlist entry that got a seat is ``booked`` with
    ``promoted_at``. ``live_event`` is the event id while live and NULL after: one live sign-up
    per member per event, held by a unique key. Attendance is ``checked_in_at``.
    """

    __tablename__ = "event_signups"
    __table_args__ = (
        UniqueConstraint("member_id", "live_event", name="uq_event_signups_member_live_event"),
        CheckConstraint("status IN ('booked', 'waitlisted', 'cancelled', 'withdrawn', 'expired', 'called_off')",
                        name="status_known"),
        CheckConstraint("(status IN ('booked', 'waitlisted')) = (live_event IS NOT NULL)", name="live_when_live"),
        CheckConstraint("guests >= 0 AND party = guests + 1", name="party_is_member_and_guests"),
        CheckConstraint("checked_in_at IS NULL OR status NOT IN ('waitlisted', 'withdrawn', 'expired')",
                        name="checked_in_never_waiting"),
        Index("ix_event_signups_session_id_status_priority_id", "session_id", "status", "priority", "id"),
        Index("ix_event_signups_member_id", "member_id"),
        Index("ix_event_signups_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # arrival order: ids follow commit order per session
    session_id: Mapped[int] = mapped_column(ForeignKey("event_sessions.id"))
    event_id: Mapped[str] = mapped_column(String(24))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    guests: Mapped[int] = mapped_column(Integer, default=0)
    party: Mapped[int] = mapped_column(Integer, default=1)  # seats: the member and their guests
    status: Mapped[str] = mapped_column(String(12))
    live_event: Mapped[str | None] = mapped_column(String(24))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # waitlist order: lower first, then id
    code: Mapped[str] = mapped_column(String(12), unique=True)  # the booking code shown at the door
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    booked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # from the waitlist to a booking
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # cancelled, withdrawn, expired, called off
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by: Mapped[str | None] = mapped_column(String(64))  # "cli", "api"
