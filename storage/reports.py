"""The dashboard's numbers (issue 14): set-based SQL over the tables the bot writes, on SQLite and PostgreSQL.

Every function takes a session, a ``Scope`` (everyone, or the key accounts of one manager) and
local dates in the rules' time zone; it returns a handful of aggregated rows — nothing is loaded
member by member. Months and quarters are the rules' time zone's: each is turned into the UTC
instants it starts and ends at, and rows are put in their month by a CASE over those bounds, so
the same statement gives the same months on both databases whatever the server's zone.

Conventions (the README's "Dashboard" section gives each number's formula):
- a purchase counts unless it was refunded in full (``refunded_at`` set); its amount is what was
  not refunded;
- a member's tier at an instant is the old tier of their first tier change after it (the audit
  trail ``member_changes``), or their tier today when it has not changed since;
- a gift redemption counts in the month its code was issued (``created_at``), whatever became of it;
- complaints are counted by storage/complaints.py's own ``summarise`` (the rules of ``complaints
  report``), over the range's tickets read once as a few columns, then put in their months;
- events are counted by storage/events.py's own ``event_figures`` (the rules of ``events report``),
  one query per event of config.yaml shown;
- event participation is a member checked in at an event (``checked_in_at``), in the quarter of the check-in.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from rules import Rules
from rules.events import Event, EventSession
from storage import complaints, events, gifts, ledger
from storage.models import (
    EventSignup, GiftRedemption, LedgerEntry, Member, MemberChange, OutboxMessage, Purchase, Ticket,
)

YEAR_DAYS = 365  # "no repeat purchase within a year" (seed 000: 流失)


@dataclass(frozen=True)
class Span:
    """A month or quarter (or part of one) in the rules' time zone, and the UTC instants it covers."""

    label: str  # "2026-03", "2026-Q1"
    first: date  # local, inclusive
    last: date  # local, inclusive
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive


@dataclass(frozen=True)
class Scope:
    """Whose members a report counts: everyone, or the key accounts of one account manager."""

    manager_id: str | None = None

    def members(self) -> ColumnElement[bool]:
        return Member.manager_id == self.manager_id if self.manager_id else literal(True)


EVERYONE = Scope()


# --------------------------------------------------------------------------- months and quarters


def month_spans(rules: Rules, first: date, last: date) -> list[Span]:
    """The months from ``first`` to ``last`` (local dates), the first and last clipped to them."""
    spans, day = [], first
    while day <= last:
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        spans.append(_span(rules, f"{day:%Y-%m}", day, min(last, following - timedelta(days=1))))
        day = following
    return spans


def quarter_spans(rules: Rules, first: date, last: date) -> list[Span]:
    """The calendar quarters from ``first`` to ``last``, the first and last clipped to them."""
    spans, day = [], first
    while day <= last:
        quarter = (day.month - 1) // 3
        following = date(day.year + (quarter == 3), (quarter + 1) % 4 * 3 + 1, 1)
        spans.append(_span(rules, f"{day.year}-Q{quarter + 1}", day, min(last, following - timedelta(days=1))))
        day = following
    return spans


def _span(rules: Rules, label: str, first: date, last: date) -> Span:
    return Span(label, first, last, rules.local_midnight(first), rules.local_midnight(last + timedelta(days=1)))


def _bucket(column, spans: Sequence[Span]):
    """The label of the span ``column`` falls in (NULL outside them)."""
    return case(*[(and_(column >= s.start, column < s.end), s.label) for s in spans], else_=None)


def _within(column, spans: Sequence[Span]) -> ColumnElement[bool]:
    return and_(column >= spans[0].start, column < spans[-1].end)


# --------------------------------------------------------------------------- tiers through time


def _tier_pairs(rules: Rules) -> list[tuple[str, str, int]]:
    """Every (old, new) tier move and its direction: +1 up, -1 down."""
    ids = [t.id for t in rules.tiers]
    return [(old, new, 1 if ids.index(new) > ids.index(old) else -1) for old in ids for new in ids if old != new]


def _is_move(detail, old: str, new: str) -> ColumnElement[bool]:
    # The audit detail of a tier change is "OLD → NEW" with an optional " (reason)" (storage/tiers.py).
    text = f"{old} → {new}"
    return or_(detail == text, detail.like(_escape_like(text) + " (%", escape="\\"))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _old_tier(detail, rules: Rules):
    """The tier a tier change's audit detail moved from."""
    return case(*[(detail.like(_escape_like(t.id) + " → %", escape="\\"), t.id) for t in rules.tiers], else_=None)


def _first_changes(at: datetime):
    """Each member's first tier change at or after ``at`` (member_id, detail): its old tier was theirs at ``at``."""
    firsts = (select(MemberChange.member_id, func.min(MemberChange.id).label("first_id"))
              .where(MemberChange.action == "tier", MemberChange.at >= at)
              .group_by(MemberChange.member_id).subquery("firsts"))
    return (select(MemberChange.member_id, MemberChange.detail)
            .join(firsts, firsts.c.first_id == MemberChange.id).subquery("first_change"))


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class MemberCount:
    tier: str
    segment: str | None  # None: not evaluated yet (before the first nightly run)
    activity: str | None
    members: int


def member_counts(session: Session, scope: Scope = EVERYONE) -> list[MemberCount]:
    """Members today by tier, segment and activity status (as the nightly evaluation left them)."""
    rows = session.execute(
        select(Member.tier, Member.segment, Member.activity, func.count())
        .where(scope.members()).group_by(Member.tier, Member.segment, Member.activity)
    )
    return [MemberCount(*row) for row in rows]


@dataclass(frozen=True)
class Movement:
    month: str
    new_members: int
    upgrades: int
    downgrades: int


def member_movement(session: Session, rules: Rules, months: Sequence[Span], scope: Scope = EVERYONE) -> list[Movement]:
    """Per month: members created, and tier changes up and down (from the audit trail)."""
    if not months:
        return []
    month = _bucket(Member.created_at, months)
    new = dict(session.execute(
        select(month, func.count()).where(_within(Member.created_at, months), scope.members()).group_by(month)
    ).all())
    up = [_is_move(MemberChange.detail, old, new_) for old, new_, way in _tier_pairs(rules) if way > 0]
    down = [_is_move(MemberChange.detail, old, new_) for old, new_, way in _tier_pairs(rules) if way < 0]
    changed = _bucket(MemberChange.at, months)
    query = (select(changed, func.sum(case((or_(*up), 1), else_=0)), func.sum(case((or_(*down), 1), else_=0)))
             .where(MemberChange.action == "tier", _within(MemberChange.at, months)).group_by(changed))
    if scope.manager_id:
        query = query.join(Member, Member.id == MemberChange.member_id).where(scope.members())
    moves = {label: (int(u or 0), int(d or 0)) for label, u, d in session.execute(query)}
    return [Movement(s.label, new.get(s.label, 0), *moves.get(s.label, (0, 0))) for s in months]


# --------------------------------------------------------------------------- retention and churn


@dataclass(frozen=True)
class Retention:
    tier: str
    members_at_start: int  # members who existed at the period's start, by their tier then
    retained: int  # of those, members with a purchase within the period
    churned: int  # of those, members with no purchase in the year up to the period's end

    @property
    def retention_rate(self) -> Decimal | None:
        return share(self.retained, self.members_at_start)

    @property
    def churn_rate(self) -> Decimal | None:
        return share(self.churned, self.members_at_start)


def share(part: int, whole: int) -> Decimal | None:
    return (Decimal(part * 100) / whole).quantize(Decimal("0.1")) if whole else None


def _buyers(start: datetime, end: datetime):
    """Members with a purchase (not refunded in full) in [start, end)."""
    return (select(Purchase.member_id)
            .where(Purchase.purchased_at >= start, Purchase.purchased_at < end, Purchase.refunded_at.is_(None))
            .distinct())


def retention(session: Session, rules: Rules, period: Span, scope: Scope = EVERYONE) -> list[Retention]:
    """Retention and churn of each tier over ``period``, the high tiers first (seed 000 第四节 Ⅱ 1.1–1.2).

    Counted as: the period's cohort by today's tier, moved to the tier they had then for the few
    members whose tier changed since; the buyers of the period and of the year up to its end,
    each joined to their member — never a scan of every member per purchase.
    """
    changes = _first_changes(period.start)
    cohort = and_(Member.created_at < period.start, scope.members())

    def by_tier_then(members: Select | None) -> Counter:
        """Members of the cohort (those in ``members`` if given) by their tier at the period's start."""
        counts = select(Member.tier, func.count()).where(cohort).group_by(Member.tier)
        moved = (select(_old_tier(changes.c.detail, rules), Member.tier, func.count())
                 .join(Member, Member.id == changes.c.member_id).where(cohort)
                 .group_by(changes.c.detail, Member.tier))
        if members is not None:
            chosen = members.subquery("chosen")
            counts = counts.join(chosen, chosen.c.member_id == Member.id)
            moved = moved.join(chosen, chosen.c.member_id == Member.id)
        found: Counter = Counter(dict(session.execute(counts).all()))
        for then, now, n in session.execute(moved):
            found[now] -= n
            found[then] += n
        return found

    at_start = by_tier_then(None)

    def buyers(start: datetime) -> Counter:
        return by_tier_then(_buyers(start, period.end))

    retained, year = buyers(period.start), buyers(period.end - timedelta(days=YEAR_DAYS))
    return [Retention(t.id, at_start[t.id], retained[t.id], at_start[t.id] - year[t.id]) for t in reversed(rules.tiers)]


# --------------------------------------------------------------------------- loyalty by quarter


@dataclass(frozen=True)
class Loyalty:
    quarter: str
    tier: str
    repeat_purchases: int  # purchases by a member who had bought before
    repeat_amount: Decimal  # what those purchases kept (amount less refunds)
    repeat_buyers: int  # members with at least one repeat purchase in the quarter
    event_participation: int  # members checked in at an event in the quarter


def loyalty(session: Session, rules: Rules, quarters: Sequence[Span], scope: Scope = EVERYONE) -> list[Loyalty]:
    """Per quarter and tier (today's): repeat purchases, their amount and buyers; event participation (1.3)."""
    if not quarters:
        return []
    earlier = Purchase.__table__.alias("earlier")
    quarter = _bucket(Purchase.purchased_at, quarters).label("quarter")
    rows = session.execute(
        select(quarter, Member.tier, func.count(), func.sum(Purchase.amount - Purchase.refunded_amount),
               func.count(Purchase.member_id.distinct()))
        .join(Member, Member.id == Purchase.member_id)
        .where(_within(Purchase.purchased_at, quarters), Purchase.refunded_at.is_(None), scope.members(),
               select(earlier.c.id).where(earlier.c.member_id == Purchase.member_id,
                                          earlier.c.purchased_at < Purchase.purchased_at,
                                          earlier.c.refunded_at.is_(None)).exists())
        .group_by(quarter, Member.tier)
    )
    found = {(q, t): (n, amount, buyers) for q, t, n, amount, buyers in rows}
    attended = event_participation(session, rules, quarters, scope)
    out = []
    for span in quarters:
        for tier in reversed(rules.tiers):
            n, amount, buyers = found.get((span.label, tier.id), (0, 0, 0))
            joined = attended.get((span.label, tier.id), 0)
            out.append(Loyalty(span.label, tier.id, n, Decimal(amount or 0).quantize(Decimal("0.01")), buyers, joined))
    return out


def event_participation(session: Session, rules: Rules, quarters: Sequence[Span],
                        scope: Scope = EVERYONE) -> dict[tuple[str, str], int]:
    """Members checked in at an event, per (quarter label, tier today)."""
    if not quarters:
        return {}
    quarter = _bucket(EventSignup.checked_in_at, quarters)
    rows = session.execute(
        select(quarter, Member.tier, func.count(EventSignup.member_id.distinct()))
        .join(Member, Member.id == EventSignup.member_id)
        .where(_within(EventSignup.checked_in_at, quarters), scope.members())
        .group_by(quarter, Member.tier))
    return {(label, tier): int(n) for label, tier, n in rows}


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class PointsMonth:
    month: str
    earned: int  # earn entries (opening balances included)
    redeemed: int  # redeem entries, as a positive number
    expired: int
    reversed: int  # taken back by refunds
    adjusted: int  # signed
    returned: int = 0  # given back by cancelled or expired redemptions (reverse entries of +points)


LEDGER_KINDS = ("earn", "redeem", "expire", "reverse", "adjust")


def points_by_month(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> list[PointsMonth]:
    """Points earned, redeemed, expired, reversed (by refunds), adjusted and returned (by cancelled or
    expired redemptions) per month (the ledger's entries; a gift's points back are not a refund)."""
    if not months:
        return []
    # A cancelled or expired redemption's points come back as a `reverse` entry keyed GIFT_BACK_KEY:
    # shown as 兑换退回, apart from refunds (退货扣回).
    gift_back = and_(LedgerEntry.kind == "reverse", LedgerEntry.idempotency_key.like(f"{ledger.GIFT_BACK_KEY}%"))
    if scope.manager_id:
        # From the manager's few members to their entries, not the range's entries to members.
        month = _bucket(LedgerEntry.occurred_at, months)
        kind = case((gift_back, literal("gift_return")), else_=LedgerEntry.kind)
        query = (select(month, kind, func.sum(LedgerEntry.amount))
                 .where(_within(LedgerEntry.occurred_at, months),
                        LedgerEntry.member_id.in_(select(Member.id).where(scope.members())))
                 .group_by(month, kind))
    else:
        # Everyone: one range read of the covering index (occurred_at, kind, amount) per month, glued
        # together — four times faster than one pass putting each of millions of entries in its month
        # with a CASE (bench/dashboard.py), and the same figures. Gift returns, a few rows, are read
        # apart (their key is not in the index) and taken out of `reverse`.
        query = union_all(*(part for s in months for part in (
            select(literal(s.label).label("month"), LedgerEntry.kind, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.occurred_at >= s.start, LedgerEntry.occurred_at < s.end)
            .group_by(LedgerEntry.kind),
            select(literal(s.label).label("month"), literal("gift_return"), func.sum(LedgerEntry.amount))
            .where(LedgerEntry.occurred_at >= s.start, LedgerEntry.occurred_at < s.end, gift_back),
        )))
    sums = {(label, kind): int(total or 0) for label, kind, total in session.execute(query)}
    if not scope.manager_id:
        for s in months:
            sums[(s.label, "reverse")] = sums.get((s.label, "reverse"), 0) - sums.get((s.label, "gift_return"), 0)
    return [PointsMonth(s.label, sums.get((s.label, "earn"), 0), -sums.get((s.label, "redeem"), 0),
                        -sums.get((s.label, "expire"), 0), -sums.get((s.label, "reverse"), 0),
                        sums.get((s.label, "adjust"), 0), sums.get((s.label, "gift_return"), 0)) for s in months]


@dataclass(frozen=True)
class Outstanding:
    tier: str
    members: int
    balance: int  # the points members hold: the programme's liability
    expiring: int  # of those, in lots whose last day falls within the next N days


def points_outstanding(session: Session, rules: Rules, today: date, days: int,
                       scope: Scope = EVERYONE) -> list[Outstanding]:
    """Points held per tier (today's), and those in earn lots whose last valid day is within ``days`` from today.

    A lot with ``expires_on`` = d is spendable through d and expires the day after (storage/ledger.py).
    """
    balances = {tier: (n, int(total or 0)) for tier, n, total in session.execute(
        select(Member.tier, func.count(), func.sum(Member.points_balance)).where(scope.members()).group_by(Member.tier)
    )}
    expiring = {tier: int(total or 0) for tier, total in session.execute(
        select(Member.tier, func.sum(LedgerEntry.remaining))
        .join(Member, Member.id == LedgerEntry.member_id)
        .where(ledger.open_lots(LedgerEntry.expires_on >= today,
                                LedgerEntry.expires_on < today + timedelta(days=days)), scope.members())
        .group_by(Member.tier)
    )}
    return [Outstanding(t.id, *balances.get(t.id, (0, 0)), expiring.get(t.id, 0)) for t in reversed(rules.tiers)]


# --------------------------------------------------------------------------- pushes


@dataclass(frozen=True)
class PushMonth:
    job: str
    month: str
    planned: int  # every row planned (skipped ones included)
    sent: int  # WeChat took the call (sent_at set): delivered, not yet reported, or failed by WeChat's report
    delivered: int  # WeChat's TEMPLATESENDJOBFINISH said success
    sent_unconfirmed: int  # WeChat took the call and has not reported on it yet (status sent)
    failed: int  # failed or unreachable
    in_doubt: int  # the call's answer never came
    skipped: int  # not sent, for a reason (opted out, lapsed, unbound ...)
    waiting: int  # pending or being sent


@dataclass(frozen=True)
class PushReason:
    job: str
    month: str
    status: str  # skipped | failed
    reason: str
    count: int


FAILED = ("failed", "unreachable")
WAITING = ("pending", "sending")


def pushes_by_month(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> list[PushMonth]:
    """Pushes per job and month (the month they were planned in) by outcome."""
    if not months:
        return []
    month = _bucket(OutboxMessage.created_at, months).label("month")
    status = OutboxMessage.status

    def count(*statuses: str):
        return func.sum(case((status.in_(statuses), 1), else_=0))

    query = (select(OutboxMessage.job, month, func.count(), func.count(OutboxMessage.sent_at), count("delivered"), count("sent"),
                    count(*FAILED), count("unknown"), count("skipped"), count(*WAITING))
             .where(_within(OutboxMessage.created_at, months)).group_by(OutboxMessage.job, month))
    rows = [PushMonth(job, label, *(int(v or 0) for v in values))
            for job, label, *values in session.execute(_scoped_pushes(query, scope))]
    return sorted(rows, key=lambda r: (r.job, r.month))


def push_reasons(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> list[PushReason]:
    """Skipped and failed pushes per job, month and reason."""
    if not months:
        return []
    month = _bucket(OutboxMessage.created_at, months).label("month")
    outcome = case((OutboxMessage.status.in_(FAILED), "failed"), else_="skipped").label("outcome")
    reason = func.coalesce(OutboxMessage.reason, case((OutboxMessage.status == "unreachable", "unreachable"),
                                                      else_="")).label("reason")
    query = (select(OutboxMessage.job, month, outcome, reason, func.count())
             .where(_within(OutboxMessage.created_at, months), OutboxMessage.status.in_(("skipped", *FAILED)))
             .group_by(OutboxMessage.job, month, outcome, reason))
    rows = [PushReason(*row) for row in session.execute(_scoped_pushes(query, scope))]
    return sorted(rows, key=lambda r: (r.job, r.month, r.status, -r.count, r.reason))


def _scoped_pushes(query: Select, scope: Scope) -> Select:
    if not scope.manager_id:
        return query
    return query.join(Member, Member.id == OutboxMessage.member_id).where(scope.members())


# --------------------------------------------------------------------------- gifts


@dataclass(frozen=True)
class GiftMonth:
    gift_id: str
    gift_name: str  # as named when redeemed
    month: str
    redeemed: int  # codes issued in the month
    handed_over: int  # of those, collected in store or mailed
    open: int  # of those, still open (not collected yet)
    cancelled: int
    expired: int
    points: int  # points those codes hold (cancelled and expired ones gave theirs back)


def _gift_order(rules: Rules):
    """Sort key: the catalogue's order, then withdrawn gifts by id."""
    position = {g.id: i for i, g in enumerate(rules.gifts.catalogue)}
    return lambda gift_id: (position.get(gift_id, len(position)), gift_id)


def _scoped_gifts(query: Select, scope: Scope) -> Select:
    if not scope.manager_id:
        return query
    return query.join(Member, Member.id == GiftRedemption.member_id).where(scope.members())


def gift_redemptions(session: Session, rules: Rules, months: Sequence[Span], scope: Scope = EVERYONE) -> list[GiftMonth]:
    """Codes issued per gift and month, by what became of them (only the gift-months with any)."""
    if not months:
        return []
    month = _bucket(GiftRedemption.created_at, months).label("month")
    status = GiftRedemption.status

    def count(*statuses: str):
        return func.sum(case((status.in_(statuses), 1), else_=0))

    query = (select(GiftRedemption.gift_id, func.max(GiftRedemption.gift_name), month, func.count(),
                    count("collected", "mailed"), count("open"), count("cancelled"), count("expired"),
                    func.sum(case((status.in_(gifts.CLOSED), 0), else_=GiftRedemption.points)))
             .where(_within(GiftRedemption.created_at, months)).group_by(GiftRedemption.gift_id, month))
    rows = [GiftMonth(gift_id, name, label, *(int(v or 0) for v in values))
            for gift_id, name, label, *values in session.execute(_scoped_gifts(query, scope))]
    order = _gift_order(rules)
    return sorted(rows, key=lambda r: (order(r.gift_id), r.month))


@dataclass(frozen=True)
class OpenCodes:
    gift_id: str
    gift_name: str
    open: int  # codes issued and not collected, mailed, cancelled or expired
    to_collect: int  # of those, to be collected in store
    to_mail: int  # of those, waiting for staff to mail the gift
    overdue: int  # to collect, past their last valid day (the nightly job expires them)
    points: int  # points they hold


def open_codes(session: Session, rules: Rules, today: date, scope: Scope = EVERYONE) -> list[OpenCodes]:
    """Codes not collected yet, per gift, today."""
    pickup = GiftRedemption.fulfilment == "pickup"
    query = (select(GiftRedemption.gift_id, func.max(GiftRedemption.gift_name), func.count(),
                    func.sum(case((pickup, 1), else_=0)), func.sum(case((pickup, 0), else_=1)),
                    func.sum(case((and_(pickup, GiftRedemption.valid_until < today), 1), else_=0)),
                    func.sum(GiftRedemption.points))
             .where(GiftRedemption.status == "open").group_by(GiftRedemption.gift_id))
    rows = [OpenCodes(gift_id, name, *(int(v or 0) for v in values))
            for gift_id, name, *values in session.execute(_scoped_gifts(query, scope))]
    order = _gift_order(rules)
    return sorted(rows, key=lambda r: order(r.gift_id))


def gift_stock(session: Session, rules: Rules) -> list[gifts.StockLine]:
    """Stock of every gift (the programme's, the same for every scope): storage/gifts.py's own view."""
    return gifts.stock_lines(session, rules)


# --------------------------------------------------------------------------- complaints


@dataclass(frozen=True)
class ComplaintMonth:
    month: str
    opened: int  # tickets opened in the month
    resolved: int  # tickets resolved in the month
    within_sla: Decimal | None  # % of those resolved by their resolution due time
    median_first_response_hours: Decimal | None  # of the tickets opened, those answered
    median_resolution_hours: Decimal | None  # opening to resolution, of the tickets resolved
    average_rating: Decimal | None  # of the tickets resolved, those rated
    ratings: int
    repeated_members: int  # members with a ticket opened in the month flagged repeated


def _decimal(value: float | None, places: str = "0.01") -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal(places))


def _scoped_members(scope: Scope) -> Select | None:
    return select(Member.id).where(scope.members()) if scope.manager_id else None


def complaints_by_month(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> list[ComplaintMonth]:
    """Per month: the figures of ``complaints report`` (storage/complaints.py ``summarise``), and repeated complainers."""
    if not months:
        return []
    opened, resolved = complaints.tickets_between(session, months[0].start, months[-1].end, _scoped_members(scope))
    out = []
    for span in months:
        mine = [t for t in opened if span.start <= t.opened_at < span.end]
        done = [t for t in resolved if span.start <= t.resolved_at < span.end]
        figures = complaints.summarise(mine, done)
        share = figures["resolved_within_sla"]
        out.append(ComplaintMonth(
            span.label, figures["opened"], figures["resolved"], _decimal(None if share is None else share * 100, "0.1"),
            _decimal(figures["median_first_response_hours"]), _decimal(figures["median_resolution_hours"]),
            _decimal(figures["average_rating"]), figures["ratings"], len({t.member_id for t in mine if t.repeated})))
    return out


def complaint_ratings(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> dict[int, int]:
    """Tickets resolved in the range by their rating (1–5), every rating listed."""
    if not months:
        return {}
    query = (select(Ticket.rating, func.count()).where(_within(Ticket.resolved_at, months), Ticket.rating.is_not(None))
             .group_by(Ticket.rating))
    members = _scoped_members(scope)
    if members is not None:
        query = query.where(Ticket.member_id.in_(members))
    found = dict(session.execute(query).all())
    return {score: int(found.get(score, 0)) for score in range(1, 6)}


@dataclass(frozen=True)
class Complainer:
    card_no: str
    name: str
    tier: str
    tickets: int  # opened in the range
    flagged: int  # of those, flagged repeated (the nth in one category within the rules' days)
    last_opened: datetime


def repeated_complainers(session: Session, months: Sequence[Span], scope: Scope = EVERYONE) -> list[Complainer]:
    """Members with a ticket flagged repeated opened in the range, most tickets first."""
    if not months:
        return []
    in_range = _within(Ticket.opened_at, months)
    flagged = select(Ticket.member_id).where(in_range, Ticket.repeated.is_(True))
    rows = session.execute(
        select(Member.card_no, Member.name, Member.tier, func.count(),
               func.sum(case((Ticket.repeated.is_(True), 1), else_=0)), func.max(Ticket.opened_at))
        .join(Member, Member.id == Ticket.member_id)
        .where(in_range, Ticket.member_id.in_(flagged), scope.members())
        .group_by(Member.card_no, Member.name, Member.tier))
    out = [Complainer(card, name, tier, int(n), int(f or 0), last) for card, name, tier, n, f, last in rows]
    return sorted(out, key=lambda c: (-c.tickets, -c.flagged, c.card_no))


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class EventLine:
    event: Event
    session: EventSession
    figures: events.SessionFigures


def event_sessions(session: Session, rules: Rules, first: date, last: date, now: datetime,
                   scope: Scope = EVERYONE) -> list[EventLine]:
    """The sessions of config.yaml's events that start in the range (local dates), and those not ended yet
    of events open for sign-up: each with ``events report``'s figures (storage/events.py ``event_figures``)."""
    members = _scoped_members(scope)
    out = []
    for event in rules.events.catalogue:
        opened = rules.local_instant(event.signup_opens) <= now
        chosen = [es for es in event.sessions
                  if first <= es.starts.date() <= last or (opened and now < rules.local_instant(es.ends))]
        if not chosen:
            continue
        figures = {f.session_key: f for f in events.event_figures(session, rules, event, now, members)}
        out.extend(EventLine(event, es, figures[es.id]) for es in chosen)
    return out
