"""Purchases from the store systems: validated, recorded once per receipt, earning points; refunds."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import BotError, Rules
from storage import complaints, gifts, ledger
from storage.csvfile import CsvTable, bad_character, shown
from storage.members import find_by_card, record_change
from storage.models import LedgerEntry, Member, Purchase, PurchaseRefund

FIELDS = ("receipt_no", "card_no", "amount", "purchased_at", "store")
MAX_AMOUNT = Decimal("9999999999.99")  # what Numeric(12, 2) holds
CENTS = Decimal("0.01")
FUTURE_TOLERANCE = timedelta(hours=1)  # store clocks drift; a day ahead is a data error
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)  # older is a data error (or year 1 from an empty date)
RECEIPT_NO_LENGTH = Purchase.__table__.c.receipt_no.type.length  # 64


class FieldError(BotError, ValueError):
    """A purchase field is missing or wrong; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class PurchaseIn:
    receipt_no: str
    card_no: str
    amount: Decimal
    purchased_at: datetime  # aware
    store: str


def parse_purchase(raw: Mapping[str, Any], rules: Rules, now: datetime) -> PurchaseIn:
    """Validate one purchase (a CSV row or a JSON object) or raise FieldError naming the field.

    Whatever passes fits its column on every database; JSON numbers may come as Decimal (the
    API reads them so: no float rounding, no size limit before the checks here).
    """
    if not isinstance(raw, Mapping):
        raise FieldError("purchase", "must be an object with " + ", ".join(FIELDS))
    unknown = sorted(str(name) for name in set(raw) - set(FIELDS) - {None})
    if unknown:
        name = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "…"
        raise FieldError(name, "unknown field")
    receipt_no = _text(raw, "receipt_no", RECEIPT_NO_LENGTH)
    card_no = _text(raw, "card_no", 32).upper()
    store = _text(raw, "store", 64)
    amount = _amount(raw.get("amount"))
    purchased_at = _timestamp(raw.get("purchased_at"), rules)
    if purchased_at > now + FUTURE_TOLERANCE:
        raise FieldError("purchased_at", f"{shown(raw.get('purchased_at'))} is in the future")
    return PurchaseIn(receipt_no, card_no, amount, purchased_at, store)


def _text(raw: Mapping[str, Any], name: str, limit: int) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError(name, "is required")
    if isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        value = str(value)  # a JSON integer, e.g. a receipt number sent as a number
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 256:
        value = str(value)
    elif not isinstance(value, str):
        raise FieldError(name, "must be text")
    value = value.strip()
    if len(value) > limit:
        raise FieldError(name, f"must be at most {limit} characters")
    bad = bad_character(value)
    if bad:
        raise FieldError(name, f"must not contain control characters ({bad})")
    return value


def _amount(value: Any) -> Decimal:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError("amount", "is required")
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise FieldError("amount", "must be a number ≥ 0")
    try:
        if isinstance(value, (int, Decimal)):
            amount = Decimal(value)
        else:  # a float as written, not its binary expansion
            amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise FieldError("amount", f"{shown(value)} is not a number") from None
    if not amount.is_finite() or amount < 0:  # NaN and Infinity too
        raise FieldError("amount", "must be a number ≥ 0")
    if amount > MAX_AMOUNT:  # before quantize, which cannot hold 1e30 and fails
        raise FieldError("amount", f"must be at most {MAX_AMOUNT}")
    cents = amount.quantize(CENTS)
    if cents != amount:
        raise FieldError("amount", f"{shown(value)} has more than 2 decimal places")
    return cents.copy_abs()  # -0 is 0


def _timestamp(value: Any, rules: Rules) -> datetime:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError("purchased_at", "is required, as ISO 8601 text")
    if not isinstance(value, str):
        raise FieldError("purchased_at", "must be ISO 8601 text, e.g. 2026-11-01T10:00:00+08:00")
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) > 64 or bad_character(text):
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError("purchased_at", f"{shown(value)} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None:  # the stores' local time
        moment = moment.replace(tzinfo=rules.zone)
    try:
        moment = moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):  # year 1 or 9999 with an offset that leaves the calendar
        raise FieldError("purchased_at", f"{shown(value)} is out of range") from None
    if moment < EARLIEST:
        raise FieldError("purchased_at", f"{shown(value)} is before {EARLIEST:%Y-%m-%d}")
    return moment


@dataclass(frozen=True)
class PurchaseResult:
    receipt_no: str
    status: str  # created | duplicate | refused
    reason: str | None = None
    points: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"receipt_no": self.receipt_no, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.status == "created":
            out["points"] = self.points
        return out


def points_for(amount: Decimal, rate: Decimal) -> int:
    """Points earned: amount × rate, rounded down."""
    return math.floor(amount * rate)


def record_purchase(session: Session, purchase: PurchaseIn, rules: Rules, actor: str = "api", *,
                    now: datetime) -> PurchaseResult:
    """Record a purchase once per receipt number and award its points (an earn lot), the VIP gift
    entitlements it brings and, for a key account's first purchase, the call-back task (回访)."""
    existing = session.scalar(select(Purchase).where(Purchase.receipt_no == purchase.receipt_no))
    if existing is not None:
        return _duplicate(session, existing, purchase)
    member = find_by_card(session, purchase.card_no)
    if member is None:
        return PurchaseResult(purchase.receipt_no, "refused", f"card_no {purchase.card_no} is not a known member")
    tier = rules.tier(member.tier)
    points = points_for(purchase.amount, tier.points_rate)
    try:
        # One savepoint per receipt: the purchase, its earn lot and the audit row go in together
        # or not at all, and a concurrent copy of the same receipt loses here, as a duplicate.
        with session.begin_nested():
            session.add(Purchase(
                receipt_no=purchase.receipt_no, member_id=member.id, amount=purchase.amount,
                purchased_at=purchase.purchased_at, store=purchase.store, points_earned=points, created_at=now,
            ))
            session.flush()
            if points > 0:
                ledger.award_points(
                    session, member.id, points,
                    expires_on=tier.lot_expiry(rules.today(purchase.purchased_at)),
                    reference=purchase.receipt_no, idempotency_key=f"purchase:{purchase.receipt_no}",
                    occurred_at=purchase.purchased_at,
                )
            record_change(session, member.id, "purchase", actor, f"{purchase.receipt_no} {purchase.amount} CNY", now=now)
            gifts.record_purchase_entitlements(session, rules, member, purchase.receipt_no, purchase.amount,
                                               purchase.purchased_at, now)
            complaints.first_purchase_callback(session, rules, now, member, purchase.purchased_at)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(Purchase).where(Purchase.receipt_no == purchase.receipt_no))
        if existing is None:  # not a duplicate receipt: a real fault, the caller's transaction fails
            raise
        return _duplicate(session, existing, purchase)
    return PurchaseResult(purchase.receipt_no, "created", points=points)


def _duplicate(session: Session, existing: Purchase, purchase: PurchaseIn) -> PurchaseResult:
    member_card = find_card(session, existing.member_id)
    same = existing.amount == purchase.amount and member_card == purchase.card_no
    if same:
        return PurchaseResult(purchase.receipt_no, "duplicate")
    return PurchaseResult(
        purchase.receipt_no, "refused",
        f"receipt_no {purchase.receipt_no} was already recorded with another card or amount",
    )


def find_card(session: Session, member_id: int) -> str | None:
    return session.scalar(select(Member.card_no).where(Member.id == member_id))


REFUND_FIELDS = ("amount", "refund_no")
FULL_REFUND = "full"  # the refund number of a refund of everything left, when the store gives none


@dataclass(frozen=True)
class RefundIn:
    """A refund asked for: ``amount`` None refunds everything left of the purchase."""

    amount: Decimal | None = None
    refund_no: str = FULL_REFUND


def parse_refund(raw: Mapping[str, Any] | None) -> RefundIn:
    """Validate a refund (a JSON object, a CSV row less its receipt_no, or nothing) or raise FieldError."""
    if raw is None:
        return RefundIn()
    if not isinstance(raw, Mapping):
        raise FieldError("refund", "must be an object with " + ", ".join(REFUND_FIELDS))
    unknown = sorted(str(name) for name in set(raw) - set(REFUND_FIELDS) - {None})
    if unknown:
        raise FieldError(unknown[0][:64], "unknown field")
    amount = None if raw.get("amount") in (None, "") else _amount(raw.get("amount"))
    if amount is not None and amount <= 0:
        raise FieldError("amount", "must be more than 0")
    if raw.get("refund_no") in (None, ""):
        if amount is not None:
            raise FieldError("refund_no", "is required with an amount (it makes a retried refund count once)")
        return RefundIn()
    return RefundIn(amount, _text(raw, "refund_no", 64))


@dataclass(frozen=True)
class RefundResult:
    receipt_no: str
    status: str  # refunded | already_refunded | not_found | refused
    points_reversed: int = 0
    shortfall: int = 0
    points_expired: int = 0  # the purchase's points that had expired: gone already, nothing to take back
    refund_no: str | None = None
    amount: Decimal | None = None
    refunded_total: Decimal | None = None  # of the purchase, this refund included
    reason: str | None = None
    gift_entitlement: str | None = None  # taken_back | kept_used: the purchase's VIP gift-list entitlement

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"receipt_no": self.receipt_no, "status": self.status}
        if self.refund_no is not None:
            out["refund_no"] = self.refund_no
        if self.status in ("refunded", "already_refunded") and self.amount is not None:
            out.update(amount=str(self.amount), refunded_total=str(self.refunded_total))
        if self.status == "refunded":
            out.update(points_reversed=self.points_reversed, shortfall=self.shortfall)
            if self.points_expired:
                out["points_expired"] = self.points_expired
            if self.gift_entitlement:
                out["gift_entitlement"] = self.gift_entitlement
        if self.reason:
            out["reason"] = self.reason
        return out


def refund_purchase(session: Session, receipt_no: str, refund: RefundIn | None = None,
                    actor: str = "api", *, rules: Rules, now: datetime) -> RefundResult:
    """Refund a purchase, in full or in part, once per refund number; take back the points of that share.

    A partial refund of ``amount`` takes back its own share, floor(points earned × amount / purchase
    amount); the refund that completes the purchase takes back what the earlier ones left, so the
    refunds add up to all of the purchase's points (1,201 points refunded as 333.33, 333.33 and
    334.34 of 1,001.00: 399, 399 and 403). Points already spent
    cannot go below zero (the shortfall is reported and noted in the ledger); points of the purchase
    that had expired are not taken from other points. When what is left of the purchase falls below
    ``gifts.vip_gift_min_purchase``, the VIP gift-list entitlement it earned is taken back if unused
    (a used one stays). A receipt number no purchase can have (too
    long, control characters) is ``not_found`` without asking the database (PostgreSQL refuses NUL).
    """
    refund = refund or RefundIn()
    if not isinstance(receipt_no, str) or len(receipt_no) > RECEIPT_NO_LENGTH or bad_character(receipt_no):
        return RefundResult(receipt_no, "not_found")
    purchase = session.scalar(select(Purchase).where(Purchase.receipt_no == receipt_no).with_for_update())
    if purchase is None:
        return RefundResult(receipt_no, "not_found")
    done = session.scalar(select(PurchaseRefund).where(PurchaseRefund.purchase_id == purchase.id,
                                                       PurchaseRefund.refund_no == refund.refund_no))
    left = purchase.amount - purchase.refunded_amount
    if done is not None or (refund.amount is None and left <= 0):
        if done is not None and refund.amount is not None and done.amount != refund.amount:
            return RefundResult(receipt_no, "refused", refund_no=refund.refund_no,
                                reason=f"refund_no {refund.refund_no} was already used for {done.amount}")
        return RefundResult(receipt_no, "already_refunded", refund_no=refund.refund_no,
                            amount=done.amount if done else None, refunded_total=purchase.refunded_amount)
    amount = left if refund.amount is None else refund.amount
    if amount > left:
        return RefundResult(receipt_no, "refused", refund_no=refund.refund_no,
                            reason=f"amount {amount} is more than the {left} left to refund of {purchase.amount}")
    earlier = session.execute(select(func.coalesce(func.sum(PurchaseRefund.points_share), 0),
                                     func.coalesce(func.sum(PurchaseRefund.points_reversed + PurchaseRefund.shortfall), 0))
                              .where(PurchaseRefund.purchase_id == purchase.id)).one()
    shared_before, taken_before = int(earlier[0]), int(earlier[1])
    refunded_total = purchase.refunded_amount + amount
    if refunded_total >= purchase.amount:  # the refund that completes it takes back all that is left
        share = purchase.points_earned - shared_before
    else:
        share = math.floor(purchase.points_earned * amount / purchase.amount)
    reversal, expired = ledger.Reversal(None, 0, 0), 0
    if share > 0:
        lot = session.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == f"purchase:{receipt_no}"))
        # Points of this purchase that expired were never used: taking others' points for them would be unfair.
        lot_expired = -(session.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.idempotency_key == f"expire:lot:{lot}")
        ) or 0) if lot else 0
        take = max(min(share, purchase.points_earned - lot_expired - taken_before), 0)
        expired = share - take
        if take:
            key = f"refund:{receipt_no}" if refund.refund_no == FULL_REFUND else f"refund:{receipt_no}:{refund.refund_no}"
            reversal = ledger.reverse_points(session, purchase.member_id, take, reference=receipt_no,
                                             idempotency_key=key, now=now, lot_id=lot)
    session.add(PurchaseRefund(purchase_id=purchase.id, refund_no=refund.refund_no, amount=amount,
                               points_share=max(share, 0), points_reversed=reversal.reversed_points,
                               shortfall=reversal.shortfall, points_expired=expired, actor=actor,
                               created_at=now))
    purchase.refunded_amount = refunded_total
    if refunded_total >= purchase.amount:
        purchase.refunded_at = now
    entitlement = gifts.refund_entitlement(session, rules, purchase.member_id, receipt_no,
                                           purchase.amount - refunded_total)
    record_change(session, purchase.member_id, "refund", actor,
                  f"{receipt_no} {refund.refund_no}: {amount} CNY, {reversal.reversed_points} points back"
                  + (f", gift entitlement {entitlement.replace('_', ' ')}" if entitlement else ""), now=now)
    return RefundResult(receipt_no, "refunded", reversal.reversed_points, reversal.shortfall, expired,
                        refund.refund_no, amount, refunded_total, gift_entitlement=entitlement)


# --------------------------------------------------------------------------- CSV


@dataclass
class PurchaseImportReport:
    results: list[PurchaseResult] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def summary(self) -> str:
        return (
            f"{self.count('created')} created, {self.count('duplicate')} duplicate, "
            f"{len(self.errors)} refused"
        )


def import_purchases(session: Session, lines: Iterable[str], rules: Rules, now: datetime,
                     actor: str = "cli") -> PurchaseImportReport:
    """Record purchases from CSV text; bad rows are reported with their line, good rows kept.

    A row is bad when a field is (``parse_purchase``, the API's check too), when csv cannot read
    it (a field over csv's size limit), or when the store refuses it (an unknown card).
    """
    report = PurchaseImportReport()
    for record in CsvTable(lines).readable(FIELDS, report.errors):
        try:
            purchase = parse_purchase(record.values, rules, now)
        except FieldError as exc:
            report.errors.append((record.line, str(exc)))
            continue
        result = record_purchase(session, purchase, rules, actor, now=now)
        if result.status == "refused":
            report.errors.append((record.line, result.reason or "refused"))
        else:
            report.results.append(result)
    return report


REFUND_COLUMNS = ("receipt_no", "refund_no", "amount")


@dataclass
class RefundImportReport:
    results: list[RefundResult] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def summary(self) -> str:
        refunded = sum(1 for r in self.results if r.status == "refunded")
        return f"{refunded} refunded, {len(self.results) - refunded} already refunded, {len(self.errors)} refused"


def import_refunds(session: Session, lines: Iterable[str], rules: Rules, now: datetime,
                   actor: str = "cli") -> RefundImportReport:
    """Refunds from CSV (receipt_no,refund_no,amount; an empty amount refunds everything left), each once."""
    report = RefundImportReport()
    for record in CsvTable(lines).readable(("receipt_no",), report.errors):
        values = {name: record.values.get(name) for name in REFUND_COLUMNS}
        try:
            receipt_no = _text(values, "receipt_no", RECEIPT_NO_LENGTH)
            refund = parse_refund({k: values[k] for k in REFUND_FIELDS if values.get(k)})
        except FieldError as exc:
            report.errors.append((record.line, str(exc)))
            continue
        result = refund_purchase(session, receipt_no, refund, actor, rules=rules, now=now)
        if result.status in ("refused", "not_found"):
            report.errors.append((record.line, result.reason or f"receipt_no {receipt_no} is not a known purchase"))
        else:
            report.results.append(result)
    return report
