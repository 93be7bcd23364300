"""SQLAlchemy 2.0 typed models. Invariants live here as constraints, not in hope.

No column defaults to the wall clock: every time is written by the operation from its caller's
``now`` (the injected clock), so a row forgotten by an operation fails its NOT NULL at once.
"""
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
    text,
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
    role: Mapped[str] = mapped_column(String(16), default="manager")  # manager | service | supervisor | admin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The dashboard's sign-in (issue 14): a salted hash only, never the password.
    password_hash: Mapped[str | None] = mapped_column(String(255))


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
    # 挽留: points and tier kept until this day (exclusive), then reset unless the member bought.
    retention_grace_until: Mapped[date | None] = mapped_column(Date)
    lapsed_reset_on: Mapped[date | None] = mapped_column(Date)  # 抛弃: points reset on lapsing (once per lapse)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


OPEN_LOT_SQL = "kind = 'earn' AND remaining > 0"  # the partial index's condition; queries repeat it verbatim


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
        Index("ix_ledger_occurred_at", "occurred_at", "kind", "amount"),  # the dashboard's points by month
        # Earn lots with points left, by their last day: the dashboard's "expires in the next 90 days"
        # reads only these (a fraction of the ledger), never the table's rows.
        Index("ix_ledger_open_lots", "expires_on", "member_id", "remaining",
              sqlite_where=text(OPEN_LOT_SQL), postgresql_where=text(OPEN_LOT_SQL)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: earn > 0, redeem/expire/reverse < 0
    remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_on: Mapped[date | None] = mapped_column(Date)  # earn lots only
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberChange(Base):
    """Audit trail: every change to a member record is traceable (seed 002 五.1)."""

    __tablename__ = "member_changes"
    __table_args__ = (
        Index("ix_member_changes_member_id_id", "member_id", "id"),
        Index("ix_member_changes_action_at", "action", "at"),  # the dashboard's tier movement by month
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    action: Mapped[str] = mapped_column(String(32))  # import, bind, unbind, unfollow, opt_out, tier ...
    detail: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))  # "openid:...", "cli", "api", "job:..."
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """One push to one recipient for one occasion of a job; the unique key makes it once only.

    status: pending → sending (claimed by a sender) → sent | failed | unreachable | unknown;
    or skipped (with the reason) when planned. ``unknown`` (in doubt): the sender died during
    the call, or the call timed out, so the message may have arrived; it is not sent again.
    ``call_started_at`` is committed before each call to WeChat and cleared when WeChat's answer
    proves it did not take the message: a claimed row without it was never handed to WeChat.
    WeChat's TEMPLATESENDJOBFINISH event then settles sent and unknown rows: ``delivered``, or
    ``failed`` with WeChat's status as the reason, at ``settled_at``.
    """

    __tablename__ = "push_outbox"
    __table_args__ = (
        UniqueConstraint("job", "occasion", "recipient", name="uq_push_outbox_key"),
        Index("ix_push_outbox_status_id", "status", "id"),
        Index("ix_push_outbox_job_occasion", "job", "occasion"),
        Index("ix_push_outbox_msgid", "msgid"),
        Index("ix_push_outbox_created_at", "created_at"),  # the dashboard's pushes by month
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
    call_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a call that may have reached WeChat
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
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
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- complaints (DOMAIN.md: Complaints)


class Ticket(Base):
    """A complaint (or a 人工客服 conversation) with its 24-hour promise.

    status: open → waiting (for the member: the resolution clock pauses) → open … → resolved;
    a member's 补充 on a resolved ticket reopens it. Due times are stored (they survive restarts)
    and recomputed from the ticket's events (storage/complaints.py: ``recompute``).
    """

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'waiting', 'resolved')", name="status_known"),
        CheckConstraint("priority IN ('high', 'normal')", name="priority_known"),
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating_range"),
        Index("ix_tickets_member_id_id", "member_id", "id"),
        Index("ix_tickets_assignee_id_status", "assignee_id", "status"),
        Index("ix_tickets_status", "status"),
        Index("ix_tickets_opened_at", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # T20261123-0042
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(12), default="complaint")  # complaint | human
    category: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), default="open")
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    description: Mapped[str] = mapped_column(Text)
    # What opened it (the WeChat message): a retry, even without Redis, opens nothing new.
    request_key: Mapped[str | None] = mapped_column(String(96), unique=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: answered, or paused
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: resolved, or paused
    period: Mapped[int] = mapped_column(Integer, default=0)  # 0, then one more for each reopening
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    repeated: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str | None] = mapped_column(Text)  # the resolution, as sent to the member
    rating_asked_period: Mapped[int | None] = mapped_column(Integer)  # the period whose resolution asked to rate
    rating_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(Text)


class TicketEvent(Base):
    """One thing that happened to a ticket, by whom and when: the thread and the audit trail.

    kind: opened, media, note (the member's 补充), replied, waiting, reopened, assigned,
    transferred, viewed, resolved, rated, breached.
    """

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))  # "member:12", "staff:M001", "job:ticket_watch", "cli"
    body: Mapped[str | None] = mapped_column(Text)
    delivery: Mapped[str | None] = mapped_column(String(64))  # for replies: custom, template, in doubt …
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffInvite(Base):
    """A one-time code a staff member sends as `员工绑定 <code>` to link their WeChat."""

    __tablename__ = "staff_invites"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by: Mapped[str | None] = mapped_column(String(64))


class CallBack(Base):
    """A call-back task (回访): after a key account's first purchase, after every resolved ticket."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_staff_id_done_at", "staff_id", "done_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(48), unique=True)  # "purchase:<member>", "ticket:<id>:<period>"
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    reason: Mapped[str] = mapped_column(String(16))  # first_purchase | resolved
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
# --------------------------------------------------------------------------- dashboard (issue 14)


class AdminSession(Base):
    """A staff member's sign-in to the dashboard; the browser holds the token, the table only its hash."""

    __tablename__ = "admin_sessions"
    __table_args__ = (Index("ix_admin_sessions_staff_id", "staff_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """Wrong dashboard passwords for one staff id, as typed (unknown ids too), from one client address.

    Sign-in throttling (storage/logins.py) slows that pair down; other addresses are not affected.
    """

    __tablename__ = "login_failures"
    __table_args__ = (CheckConstraint("failures >= 0", name="failures_not_negative"),
                      Index("ix_login_failures_last_failed_at", "last_failed_at"))

    staff_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wait_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # no password is looked at before it
# --------------------------------------------------------------------------- gifts
# The catalogue is rules (config.yaml `gifts:`); what the database holds is the state that must
# never go wrong under concurrency: stock, redemptions and their codes, entitlements, history.


class GiftStock(Base):
    """How many of one gift the stores hold: ``stock`` on hand, ``reserved`` of them for open codes.

    A redemption reserves one (``reserved < stock`` in the UPDATE's WHERE: never oversold); a
    handover takes it off both; a cancel or an expiry gives the reservation back.
    """

    __tablename__ = "gift_stock"
    __table_args__ = (
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= stock", name="reserved_within_stock"),
        CheckConstraint("handed_over >= 0", name="handed_over_not_negative"),
    )

    gift_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stock: Mapped[int] = mapped_column(Integer, default=0)  # on hand, reserved ones included
    reserved: Mapped[int] = mapped_column(Integer, default=0)  # held for open codes
    handed_over: Mapped[int] = mapped_column(Integer, default=0)  # collected or mailed, ever
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftEntitlement(Base):
    """A diamond member's right to one gift from the VIP gift list, earned by a purchase (once per source)."""

    __tablename__ = "gift_entitlements"
    __table_args__ = (
        UniqueConstraint("member_id", "source", name="uq_gift_entitlements_member_source"),
        Index("ix_gift_entitlements_member_id_used", "member_id", "redemption_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    source: Mapped[str] = mapped_column(String(80))  # "purchase:R123" or "annual:2027"
    reason: Mapped[str] = mapped_column(String(16))  # purchase | annual
    redemption_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)  # the redemption that used it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftRedemption(Base):
    """One redemption with its code. status: open → collected | mailed | cancelled | expired."""

    __tablename__ = "gift_redemptions"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'collected', 'mailed', 'cancelled', 'expired')", name="status_known"),
        CheckConstraint("points >= 0", name="points_not_negative"),
        Index("ix_gift_redemptions_member_id_gift_id", "member_id", "gift_id"),
        Index("ix_gift_redemptions_status_valid_until", "status", "valid_until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    gift_id: Mapped[str] = mapped_column(String(32))
    gift_name: Mapped[str] = mapped_column(String(64))  # as named when redeemed (the gift may be withdrawn)
    kind: Mapped[str] = mapped_column(String(8))  # points | vip_item | vip_gift
    fulfilment: Mapped[str] = mapped_column(String(8))  # pickup | mail
    points: Mapped[int] = mapped_column(BigInteger, default=0)  # spent; given back on cancel or expiry
    month: Mapped[str] = mapped_column(String(7))  # local YYYY-MM redeemed in: per-month limits
    status: Mapped[str] = mapped_column(String(10), default="open")
    valid_until: Mapped[date] = mapped_column(Date)  # local date; a code still open after it expires
    mail_name: Mapped[str | None] = mapped_column(String(64))
    mail_phone: Mapped[str | None] = mapped_column(String(32))
    mail_address: Mapped[str | None] = mapped_column(String(200))
    tracking: Mapped[str | None] = mapped_column(String(200))  # the note given when mailed
    closed_by: Mapped[str | None] = mapped_column(String(64))  # who handed it over, mailed or cancelled it
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftRedemptionEvent(Base):
    """A redemption's status history: who changed what, and when."""

    __tablename__ = "gift_redemption_events"
    __table_args__ = (Index("ix_gift_redemption_events_redemption_id_id", "redemption_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    redemption_id: Mapped[int] = mapped_column(ForeignKey("gift_redemptions.id"))
    from_status: Mapped[str | None] = mapped_column(String(10))
    to_status: Mapped[str] = mapped_column(String(10))
    actor: Mapped[str] = mapped_column(String(64))  # "openid:o6_b…", "cli", "api", "staff:M001", "job:gift_expiry"
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class GiftStockChange(Base):
    """An operator's stock adjustment, for the record."""

    __tablename__ = "gift_stock_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gift_id: Mapped[str] = mapped_column(String(32))
    change: Mapped[int] = mapped_column(Integer)
    stock_after: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    booked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # from the waitlist to a booking
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # cancelled, withdrawn, expired, called off
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by: Mapped[str | None] = mapped_column(String(64))  # "cli", "api"
