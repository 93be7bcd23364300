"""Gifts: stock, redemptions with their codes, entitlements to the VIP gift list, handover and expiry.

Never oversold, never spent twice, held by the database (fuint#71, CRMEB's stock decrement,
macrozheng/mall#353 are the failures avoided):
- the member's row is locked first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write
  transaction is serialised already), so their limits, entitlements and balance are read once
  nobody else can change them;
- stock is reserved by ``UPDATE gift_stock SET reserved = reserved + 1 WHERE reserved < stock``,
  checked by its row count, behind a ``CHECK (reserved <= stock)``;
- points are spent by the ledger's conditional UPDATE (``WHERE points_balance >= n``);
- a code changes status by ``UPDATE … WHERE status = 'open'``: a second handover, cancel or
  expiry of the same code matches nothing.
Operations take a session and never commit; every status change is written to the history.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from rules import BotError, Rules, echoed
from rules.gifts import Gift
from rules.pushes import field_pieces
from storage import ledger, outbox
from storage.codes import new_code, normalise_code
from storage.models import (
    GiftEntitlement, GiftRedemption, GiftRedemptionEvent, GiftStock, GiftStockChange, Member,
)

CODE_LENGTH = 8  # storage/codes.py: about 8.5 × 10^11 codes
CLOSED = ("cancelled", "expired")  # statuses that hold no stock and count toward no limit


class GiftRefused(BotError):
    """A redemption that may not happen: ``message`` names the member-facing text, ``values`` fill it."""

    def __init__(self, message: str, **values: Any):
        super().__init__(f"{message}: {values}")
        self.message, self.values = message, values


# --------------------------------------------------------------------------- stock


@dataclass(frozen=True)
class StockLine:
    gift_id: str
    name: str
    kind: str
    in_catalogue: bool  # False: withdrawn from config.yaml (its open codes stay valid)
    stock: int
    reserved: int
    handed_over: int

    @property
    def available(self) -> int:
        return self.stock - self.reserved


def stock_lines(session: Session, rules: Rules) -> list[StockLine]:
    """Every gift of the catalogue, then every withdrawn gift that still has stock rows, with their counts."""
    rows = {row.gift_id: row for row in session.scalars(select(GiftStock))}
    names = dict(session.execute(
        select(GiftRedemption.gift_id, func.max(GiftRedemption.gift_name)).group_by(GiftRedemption.gift_id)).all())
    lines = []
    for gift in rules.gifts.catalogue:
        row = rows.pop(gift.id, None)
        lines.append(StockLine(gift.id, gift.name, gift.kind, True, *(_counts(row))))
    for gift_id, row in sorted(rows.items()):
        lines.append(StockLine(gift_id, names.get(gift_id, gift_id), "-", False, *_counts(row)))
    return lines


def _counts(row: GiftStock | None) -> tuple[int, int, int]:
    return (row.stock, row.reserved, row.handed_over) if row is not None else (0, 0, 0)


def adjust_stock(session: Session, gift_id: str, change: int, actor: str, *, now: datetime) -> GiftStock:
    """Add (or with a negative ``change`` take away) stock; never below what open codes reserve."""
    if change == 0:
        raise BotError("a stock change of 0 changes nothing")
    _ensure_stock_row(session, gift_id, now)
    result = session.execute(
        update(GiftStock).where(GiftStock.gift_id == gift_id, GiftStock.stock + change >= GiftStock.reserved)
        .values(stock=GiftStock.stock + change, updated_at=now)
    )
    row = session.get(GiftStock, gift_id, populate_existing=True)
    if result.rowcount != 1:
        raise BotError(f"{gift_id}: stock {row.stock}, {row.reserved} reserved for open codes: "
                       f"cannot take away {-change} (at most {row.stock - row.reserved})")
    session.add(GiftStockChange(gift_id=gift_id, change=change, stock_after=row.stock, actor=actor, at=now))
    session.flush()
    return row


def _ensure_stock_row(session: Session, gift_id: str, now: datetime) -> None:
    """Create the gift's stock row (0) if it has none; concurrent callers create one."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(GiftStock).values(gift_id=gift_id, stock=0, reserved=0, handed_over=0, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["gift_id"]))


def available(session: Session, gift_ids: Sequence[str]) -> dict[str, int]:
    """Stock left to redeem of each gift (0 for a gift without a stock row)."""
    rows = session.execute(select(GiftStock.gift_id, GiftStock.stock - GiftStock.reserved)
                           .where(GiftStock.gift_id.in_(list(gift_ids)))).all()
    found = dict(rows)
    return {gift_id: int(found.get(gift_id, 0)) for gift_id in gift_ids}


# --------------------------------------------------------------------------- what a member may have


@dataclass(frozen=True)
class Offer:
    gift: Gift
    left: int  # stock left to redeem
    missing: int  # points still needed (points gifts), 0 when affordable


def unused_entitlements(session: Session, member_id: int) -> int:
    return session.scalar(select(func.count()).select_from(GiftEntitlement).where(
        GiftEntitlement.member_id == member_id, GiftEntitlement.redemption_id.is_(None))) or 0


def offers(session: Session, rules: Rules, member: Any, today: date) -> list[Offer]:
    """The gifts this member may have now, in catalogue order: tier allowed, open today, and for the
    VIP gift list only while they hold an unused entitlement."""
    entitled = None
    gifts = []
    for gift in rules.gifts.catalogue:
        if member.tier not in gift.tiers or not gift.open_on(today):
            continue
        if gift.kind == "vip_gift":
            if entitled is None:
                entitled = unused_entitlements(session, member.id) > 0
            if not entitled:
                continue
        gifts.append(gift)
    left = available(session, [g.id for g in gifts])
    return [Offer(g, left[g.id], max((g.points or 0) - member.points_balance, 0)) for g in gifts]


def find_gift(rules: Rules, gift_id: str) -> Gift:
    gift = rules.gifts.gift(gift_id)
    if gift is None:
        raise GiftRefused("gift_unknown", id=echoed(gift_id))
    return gift


def _tier_names(rules: Rules, tiers: Sequence[str]) -> str:
    return "、".join(rules.tier(t).name for t in tiers)


def check_open(rules: Rules, gift: Gift, member: Any, today: date) -> None:
    """Refuse a gift this member's tier may not have, or one not open today."""
    if member.tier not in gift.tiers:
        raise GiftRefused("gift_tier_refused", gift_name=gift.name, tiers=_tier_names(rules, gift.tiers),
                          tier_name=rules.tier(member.tier).name)
    if gift.available_from and today < gift.available_from:
        raise GiftRefused("gift_not_yet", gift_name=gift.name, available_from=gift.available_from.isoformat())
    if gift.available_until and today > gift.available_until:
        raise GiftRefused("gift_no_longer", gift_name=gift.name, available_until=gift.available_until.isoformat())


def check_redeem(session: Session, rules: Rules, gift: Gift, member: Any, today: date) -> None:
    """Every refusal a redemption could meet, checked without locks (the confirmation shows the gift
    only if it would go through now; ``redeem`` checks again under the locks)."""
    check_open(rules, gift, member, today)
    _check_limits(session, gift, member.id, today)
    if gift.kind == "vip_gift" and unused_entitlements(session, member.id) == 0:
        raise GiftRefused("gift_no_entitlement", gift_name=gift.name,
                          min_purchase=f"{rules.gifts.vip_gift_min_purchase:,.0f}")
    if gift.points and member.points_balance < gift.points:
        raise _short(gift, member.points_balance)
    if available(session, [gift.id])[gift.id] <= 0:
        raise GiftRefused("gift_sold_out", gift_name=gift.name)


def _short(gift: Gift, balance: int) -> GiftRefused:
    return GiftRefused("gift_short_points", gift_name=gift.name, points=f"{gift.points:,}", balance=f"{balance:,}",
                       missing=f"{gift.points - balance:,}")


def _check_limits(session: Session, gift: Gift, member_id: int, today: date) -> None:
    if gift.limit_per_month is None and gift.limit_total is None:
        return
    held = (GiftRedemption.member_id == member_id, GiftRedemption.gift_id == gift.id,
            GiftRedemption.status.not_in(CLOSED))
    if gift.limit_total is not None:
        used = session.scalar(select(func.count()).select_from(GiftRedemption).where(*held)) or 0
        if used >= gift.limit_total:
            raise GiftRefused("gift_over_total_limit", gift_name=gift.name, limit=gift.limit_total, used=used)
    if gift.limit_per_month is not None:
        used = session.scalar(select(func.count()).select_from(GiftRedemption).where(
            *held, GiftRedemption.month == f"{today:%Y-%m}")) or 0
        if used >= gift.limit_per_month:
            raise GiftRefused("gift_over_month_limit", gift_name=gift.name, limit=gift.limit_per_month, used=used)


# --------------------------------------------------------------------------- redeem


@dataclass(frozen=True)
class Mailing:
    name: str
    phone: str
    address: str


def redeem(session: Session, rules: Rules, member_id: int, gift_id: str, now: datetime, actor: str,
           mail: Mailing | None = None) -> GiftRedemption:
    """Redeem one gift for a member: in one transaction, reserve one from stock, spend the points
    (a ``redeem`` ledger entry naming the code) or use an entitlement, and issue a code.

    Raises GiftRefused (and changes nothing the caller commits) when it may not happen.
    """
    gift = find_gift(rules, gift_id)
    today = rules.today(now)
    code = new_code(CODE_LENGTH)
    values = dict(
        code=code, member_id=member_id, gift_id=gift.id, gift_name=gift.name, kind=gift.kind,
        fulfilment=gift.fulfilment, points=gift.points or 0, month=f"{today:%Y-%m}", status="open",
        valid_until=today + timedelta(days=rules.gifts.valid_days(gift)),
        mail_name=mail.name if mail else None, mail_phone=mail.phone if mail else None,
        mail_address=mail.address if mail else None, created_at=now,
    )
    # Prebuilt Core statements on the session's connection: the members and stock rows change
    # behind the ORM (the session holds no object of either), and the write lock is held briefly.
    connection = session.connection()
    # The member's row first: every redemption of this member waits here for the one before it.
    member = connection.execute(_LOCK_MEMBER, {"member_id": member_id}).one()  # as locked, not as cached
    check_open(rules, gift, member, today)
    _check_limits(session, gift, member.id, today)
    entitlement = None
    if gift.kind == "vip_gift":
        entitlement = session.scalar(select(GiftEntitlement).where(
            GiftEntitlement.member_id == member.id, GiftEntitlement.redemption_id.is_(None))
            .order_by(GiftEntitlement.id).limit(1))
        if entitlement is None:
            raise GiftRefused("gift_no_entitlement", gift_name=gift.name,
                              min_purchase=f"{rules.gifts.vip_gift_min_purchase:,.0f}")
    if gift.points and member.points_balance < gift.points:
        raise _short(gift, member.points_balance)
    if connection.execute(_RESERVE, {"reserved_gift": gift.id}).rowcount != 1:
        raise GiftRefused("gift_sold_out", gift_name=gift.name)
    redemption = _added(session, GiftRedemption, connection.execute(_ADD_REDEMPTION, values).inserted_primary_key[0],
                        values)
    if gift.points:
        try:
            ledger.deduct_points(session, member.id, gift.points, kind="redeem", reference=code, note=gift.name,
                                 idempotency_key=f"gift:{code}", occurred_at=now, new_key=True)
        except ledger.InsufficientPoints as exc:  # cannot happen under the lock; the database says so anyway
            raise _short(gift, exc.balance) from None
    if entitlement is not None:
        used = session.execute(update(GiftEntitlement).where(
            GiftEntitlement.id == entitlement.id, GiftEntitlement.redemption_id.is_(None))
            .values(redemption_id=redemption.id).execution_options(synchronize_session=False))
        if used.rowcount != 1:
            raise GiftRefused("gift_no_entitlement", gift_name=gift.name,
                              min_purchase=f"{rules.gifts.vip_gift_min_purchase:,.0f}")
    _history(session, redemption, None, "open", actor, f"{gift.kind} {gift.points or 0} points", now)
    if gift.fulfilment == "mail":
        _alert_mail(session, rules, member, redemption, now)
    return redemption


def _added(session: Session, model: type, primary_key: int, values: dict[str, Any]) -> Any:
    """The object for a row just written by a Core INSERT, held by the session as if it had loaded it
    (a quarter of what the ORM's flush of a new object costs, inside the write lock)."""
    instance = model(id=primary_key, **values)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


_members, _stock = Member.__table__, GiftStock.__table__
_ADD_REDEMPTION = insert(GiftRedemption.__table__)
_LOCK_MEMBER = (select(_members.c.id, _members.c.tier, _members.c.points_balance, _members.c.manager_id)
                .where(_members.c.id == bindparam("member_id")).with_for_update())
_RESERVE = (update(_stock).where(_stock.c.gift_id == bindparam("reserved_gift"), _stock.c.reserved < _stock.c.stock)
            .values(reserved=_stock.c.reserved + 1))


def _alert_mail(session: Session, rules: Rules, member: Member, redemption: GiftRedemption, now: datetime) -> None:
    """The member's account manager, or the service desk, gets the name, phone and address of a gift to mail
    (a template holds the address in two fields: ``mail_address_1``, ``mail_address_2``)."""
    staff_id = member.manager_id or rules.gifts.service_desk
    if staff_id is None:
        return
    address = redemption.mail_address or ""
    first, rest = field_pieces(address, 2)
    outbox.enqueue_staff_push(
        session, "gifts", f"mail:{redemption.code}", staff_id, rules.gifts.mail_alert_message, now=now, member_id=member.id,
        extra=outbox.extra_json(gift_name=redemption.gift_name, code=redemption.code, mail_name=redemption.mail_name,
                                mail_phone=redemption.mail_phone, mail_address=address, mail_address_1=first,
                                mail_address_2=rest),
    )


def _history(session: Session, redemption: GiftRedemption, from_status: str | None, to_status: str, actor: str,
             note: str | None, at: datetime) -> None:
    # A Core INSERT: nothing reads the event back in this transaction, and the ORM's flush costs four times more.
    session.connection().execute(_ADD_EVENT, {"redemption_id": redemption.id, "from_status": from_status,
                                              "to_status": to_status, "actor": actor, "note": note,
                                              "at": at})


_ADD_EVENT = insert(GiftRedemptionEvent.__table__)


# --------------------------------------------------------------------------- after redeeming


def find_redemption(session: Session, code: str) -> GiftRedemption | None:
    return session.scalar(select(GiftRedemption).where(GiftRedemption.code == normalise_code(code)))


def member_redemptions(session: Session, member_id: int, limit: int = 10) -> list[GiftRedemption]:
    return list(session.scalars(select(GiftRedemption).where(GiftRedemption.member_id == member_id)
                                .order_by(GiftRedemption.id.desc()).limit(limit)))


def history(session: Session, redemption_id: int) -> list[GiftRedemptionEvent]:
    return list(session.scalars(select(GiftRedemptionEvent).where(GiftRedemptionEvent.redemption_id == redemption_id)
                                .order_by(GiftRedemptionEvent.id)))


@dataclass
class Closing:
    """What became of a request to close a code: ``done``, or why not, with the redemption as it is."""

    outcome: str  # done | not_found | not_open
    redemption: GiftRedemption | None = None
    points_back: int = 0


def _close(session: Session, redemption: GiftRedemption, to_status: str, actor: str, now: datetime,
           note: str | None = None, **values: Any) -> bool:
    """Move an open code to ``to_status`` once: False if another transaction closed it first."""
    moved = session.execute(
        update(GiftRedemption).where(GiftRedemption.id == redemption.id, GiftRedemption.status == "open")
        .values(status=to_status, closed_by=actor, closed_at=now, **values).execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        session.refresh(redemption)
        return False
    session.refresh(redemption)
    _history(session, redemption, "open", to_status, actor, note, now)
    return True


def _give_back(session: Session, rules: Rules, redemption: GiftRedemption, now: datetime, why: str) -> int:
    """Stock, points and entitlement of a code that was cancelled or expired come back; returns the points."""
    session.execute(update(GiftStock).where(GiftStock.gift_id == redemption.gift_id)
                    .values(reserved=GiftStock.reserved - 1).execution_options(synchronize_session=False))
    session.execute(update(GiftEntitlement).where(GiftEntitlement.redemption_id == redemption.id)
                    .values(redemption_id=None).execution_options(synchronize_session=False))
    if redemption.points:
        ledger.restore_points(session, redemption.member_id, redemption.points, now=now, today=rules.today(now),
                              reference=redemption.code, note=f"{why}: {redemption.gift_name}",
                              idempotency_key=f"{ledger.GIFT_BACK_KEY}{redemption.code}")
    return redemption.points


def cancel(session: Session, rules: Rules, code: str, member_id: int, actor: str, now: datetime) -> Closing:
    """A member cancels their own code not yet handed over: points, stock and entitlement come back.

    Someone else's code is answered like an unknown one (codes are not to be probed).
    """
    redemption = find_redemption(session, code)
    if redemption is None or redemption.member_id != member_id:
        return Closing("not_found")
    if redemption.status != "open" or not _close(session, redemption, "cancelled", actor, now, "cancelled by the member"):
        return Closing("not_open", redemption)
    points = _give_back(session, rules, redemption, now, "cancelled")
    return Closing("done", redemption, points_back=points)


def hand_over(session: Session, code: str, actor: str, now: datetime, note: str | None = None) -> Closing:
    """Mark a code collected in store, or for a mailed gift sent (``note``: the tracking number), once.

    A second call finds it no longer open and says when and by whom it was.
    """
    redemption = find_redemption(session, code)
    if redemption is None:
        return Closing("not_found")
    to_status = "mailed" if redemption.fulfilment == "mail" else "collected"
    values = {"tracking": note[:200]} if note and to_status == "mailed" else {}
    if redemption.status != "open" or not _close(session, redemption, to_status, actor, now, note, **values):
        return Closing("not_open", redemption)
    session.execute(update(GiftStock).where(GiftStock.gift_id == redemption.gift_id)
                    .values(stock=GiftStock.stock - 1, reserved=GiftStock.reserved - 1,
                            handed_over=GiftStock.handed_over + 1).execution_options(synchronize_session=False))
    return Closing("done", redemption)


def expire_due(session: Session, rules: Rules, now: datetime, message: str) -> int:
    """Expire every open pickup code whose last day is before ``today``: points, stock and entitlement come
    back, and the member is told once (one push per code). Returns the codes expired. A gift to mail
    waits on staff, not on the member: it does not expire."""
    today = rules.today(now)
    due = list(session.scalars(select(GiftRedemption).where(*_due(today)).order_by(GiftRedemption.id)))
    expired = 0
    for redemption in due:
        if not _close(session, redemption, "expired", "job:gift_expiry", now, "not collected in time"):
            continue
        points = _give_back(session, rules, redemption, now, "expired")
        returned = f"{points:,} 积分已退回，" if points else ""
        outbox.enqueue_member_push(
            session, "gift_expiry", redemption.code, redemption.member_id, message, now=now, marketing=False,
            extra=outbox.extra_json(gift_name=redemption.gift_name, code=redemption.code,
                                    valid_until=redemption.valid_until.isoformat(), returned=returned),
        )
        expired += 1
    return expired


def due_codes(session: Session, today: date) -> int:
    """How many open codes would expire on ``today`` (for the job's preview)."""
    return session.scalar(select(func.count()).select_from(GiftRedemption).where(*_due(today))) or 0


def _due(today: date) -> tuple:
    return (GiftRedemption.status == "open", GiftRedemption.valid_until < today, GiftRedemption.fulfilment == "pickup")


# --------------------------------------------------------------------------- entitlements


def record_purchase_entitlements(session: Session, rules: Rules, member: Member, receipt_no: str, amount: Decimal,
                                 purchased_at: datetime, now: datetime) -> int:
    """Entitlements to the VIP gift list a purchase brings (DOMAIN.md: Gifts; seed 000 第五节 五 (二)):
    one per purchase of at least ``gifts.vip_gift_min_purchase`` by a member of ``vip_gift_tiers``,
    and for ``annual_gift_tiers`` one with the first purchase of each calendar year (purchases of past
    years bring none now). The daily job tells members of their annual gift (``annual_entitled``).
    Returns how many were added."""
    gifts = rules.gifts
    added = 0
    if member.tier in gifts.vip_gift_tiers and amount >= gifts.vip_gift_min_purchase:
        added += _entitle(session, member.id, purchase_source(receipt_no), "purchase", now)
    year = rules.today(purchased_at).year
    if member.tier in gifts.annual_gift_tiers and year == rules.today(now).year:
        added += _entitle(session, member.id, annual_source(year), "annual", now)
    return added


def annual_source(year: int) -> str:
    return f"annual:{year}"


def purchase_source(receipt_no: str) -> str:
    return f"purchase:{receipt_no}"


TAKEN_BACK, KEPT_USED = "taken_back", "kept_used"


def refund_entitlement(session: Session, rules: Rules, member_id: int, receipt_no: str,
                       amount_left: Decimal) -> str | None:
    """A refund leaving less than ``gifts.vip_gift_min_purchase`` of a purchase takes back the gift-list
    entitlement it earned, if still unused (``TAKEN_BACK``); a used one stays (``KEPT_USED``: the gift
    was chosen, or handed over, while the purchase stood). None: the purchase earned none, or still
    qualifies. A redemption using it at the same moment is held off by the conditional delete: one of
    the two wins (the redemption then finds no entitlement and is refused)."""
    if amount_left >= rules.gifts.vip_gift_min_purchase:
        return None
    entitlement_id = session.scalar(select(GiftEntitlement.id).where(
        GiftEntitlement.member_id == member_id, GiftEntitlement.source == purchase_source(receipt_no)))
    if entitlement_id is None:
        return None
    taken = session.execute(delete(GiftEntitlement).where(
        GiftEntitlement.id == entitlement_id, GiftEntitlement.redemption_id.is_(None))
        .execution_options(synchronize_session=False)).rowcount
    return TAKEN_BACK if taken else KEPT_USED


def annual_entitled(year: int):
    """A condition on members: they earned the annual gift of ``year``."""
    return Member.id.in_(select(GiftEntitlement.member_id).where(GiftEntitlement.source == annual_source(year)))


def _entitle(session: Session, member_id: int, source: str, reason: str, now: datetime) -> int:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = session.execute(insert(GiftEntitlement).values(
        member_id=member_id, source=source, reason=reason, created_at=now,
    ).on_conflict_do_nothing(index_elements=["member_id", "source"]))
    return result.rowcount or 0
