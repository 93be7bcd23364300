"""Tier, segment and activity of members (DOMAIN.md: Tiers; seed 000 第五节 四, seed 001 11.2).

``evaluate_member`` is the rule, pure and table-tested. ``evaluate_all`` and ``tier_changes``
apply the same rule to every member in SQL (one pass, nothing loaded into Python), and a
test proves both agree on the same data.

Conventions: "the last N days" are the local dates (rules' time zone) after today − N;
visits are purchases; refunded purchases do not count; "cumulative points" are the points a
member holds (their balance): a member whose points were reset is no longer in the top share,
so the retention notice is not sent again after the reset.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import Select, and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from rules import Rules
from storage import ledger
from storage.members import find_by_card, record_changes
from storage.models import Member, MemberChange, Purchase
from storage.points import points_overview
from storage.spend import carried_spend, carried_spend_sql

YEAR_DAYS = 365


@dataclass(frozen=True)
class MemberFacts:
    tier: str  # the member's current tier
    spend: Decimal  # over the evaluation window
    purchases: int  # over the evaluation window
    visits_last_year: int
    last_purchase_on: date | None  # local date
    points: int  # the balance
    top_points: bool  # points among the top ``top_points_share`` of members
    carried_spend: Decimal = Decimal(0)  # spend an import brought, while it is inside the window
    held_until: date | None = None  # a tier set by import or an operator holds until this day (exclusive)
    grace_until: date | None = None  # a retention grace keeps points and tier until this day (exclusive)


# Tiers that hold for a window whatever the purchases: set by import or an operator, or kept for a member
# who came back during the retention grace (scheduler/jobs/points_reset.py).
HOLDING_SOURCES = ("import", "operator", "retained")


def hold_end(tier_source: str, tier_since: date | None, rules: Rules) -> date | None:
    """The day a tier set by import or an operator stops holding (None: it does not hold)."""
    if tier_source not in HOLDING_SOURCES or tier_since is None:
        return None
    return tier_since + timedelta(days=rules.segments.window_days)


def tier_rank(tier_id: str, rules: Rules) -> int:
    return [t.id for t in rules.tiers].index(tier_id)


@dataclass(frozen=True)
class Evaluation:
    tier: str
    tier_reason: str
    segment: str  # upgrade | stable | retention | lapsed
    segment_reason: str
    activity: str  # active | swinging | trending | churned
    activity_reason: str


def earned_tier(spend: Decimal, rules: Rules) -> str:
    """The highest tier whose spend threshold ``spend`` reaches."""
    reached = [t for t in rules.tiers if spend >= t.min_spend]
    return reached[-1].id


def evaluate_member(facts: MemberFacts, rules: Rules, today: date) -> Evaluation:
    """Classify one member. Every threshold comes from ``rules``."""
    seg = rules.segments
    segment, why = _segment(facts, rules, today)
    spend = facts.spend + facts.carried_spend
    tier = earned_tier(spend, rules)
    carried = f" (with {facts.carried_spend} CNY carried in by import)" if facts.carried_spend else ""
    tier_reason = (
        f"spend {spend} CNY in the last {seg.window_days} days{carried} reaches "
        f"{rules.tier(tier).name} (≥ {rules.tier(tier).min_spend})"
    )
    kept = _tier_kept(facts, segment, rules, today)
    if kept and tier_rank(tier, rules) <= tier_rank(facts.tier, rules):
        tier, tier_reason = facts.tier, f"{kept}; {tier_reason}"
    activity, activity_why = _activity(facts, rules, today)
    return Evaluation(tier, tier_reason, segment, why, activity, activity_why)


def _tier_kept(facts: MemberFacts, segment: str, rules: Rules, today: date) -> str | None:
    """Why the member keeps their tier whatever their spend earns (unless it earns a higher one); None: no reason."""
    if facts.held_until and today < facts.held_until:
        return (f"held until {facts.held_until}: set by import or an operator (or kept for a return during the "
                f"retention grace), it holds for {rules.segments.window_days} days unless purchases earn a higher tier")
    if facts.grace_until and today < facts.grace_until:
        return f"kept until {facts.grace_until} with the points (挽留: the retention grace)"
    if segment == "retention":
        until = f" until {facts.grace_until}" if facts.grace_until else " for the grace the next points_reset starts"
        return f"kept{until} with the points (挽留, retention.grace_months)"
    if segment == "lapsed" and facts.tier in rules.lapsed.keep_tier:
        return f"kept while lapsed: {facts.tier} members keep their card (lapsed.keep_tier)"
    return None


def _segment(facts: MemberFacts, rules: Rules, today: date) -> tuple[str, str]:
    """DOMAIN.md, Tiers (seed 000 第五节 四), checked in this order: a member moved in by import with no
    purchase history here yet is 稳固; 挽留/抛弃 for no purchase at all (a running grace stays 挽留);
    提升 (≥ 2 a year, or top points; 稳固 when no higher tier exists); 抛弃 for < 2 in the window;
    else 稳固. Top points are checked before the "< 2 purchases" rule on purpose: a top member who
    buys once must not fare worse (lapsed, points reset) than one who never buys (retention)."""
    seg = rules.segments
    # frequency per year ≥ threshold, kept in integers: purchases * 365 ≥ threshold * window
    frequent = facts.purchases * YEAR_DAYS >= seg.frequent_purchases_per_year * seg.window_days
    per_year = Decimal(facts.purchases * YEAR_DAYS) / seg.window_days
    top = f"balance of {facts.points} points in the top {seg.top_points_share:.0%}"
    moved_in = _moved_in(facts, today)
    if facts.purchases == 0 and moved_in:
        return "stable", f"{moved_in}; no purchase recorded yet"
    if facts.purchases == 0:
        if facts.grace_until and today < facts.grace_until:
            return "retention", f"no purchase in {seg.window_days} days; retention grace until {facts.grace_until}"
        if facts.top_points:
            return "retention", f"no purchase in {seg.window_days} days but {top}"
        return "lapsed", f"no purchase in {seg.window_days} days"
    if frequent or facts.top_points:
        because = f"{per_year:.1f} purchases a year" if frequent else top
        if rules.next_tier(facts.tier) is not None:
            return "upgrade", f"{because} and a higher tier exists"
        return "stable", f"{because}, already in the top tier"
    if facts.purchases < seg.lapsed_below_purchases and not moved_in:
        return "lapsed", f"{facts.purchases} purchase(s) in {seg.window_days} days"
    if facts.purchases < seg.lapsed_below_purchases:
        return "stable", f"{facts.purchases} purchase(s) in {seg.window_days} days; {moved_in}"
    return "stable", f"{facts.purchases} purchases in {seg.window_days} days"


def _moved_in(facts: MemberFacts, today: date) -> str | None:
    """Why the member's purchases before the bot are not known to it (so few recorded ones are no lapse)."""
    if facts.held_until and today < facts.held_until:
        return f"tier set by import or an operator, held until {facts.held_until}"
    if facts.carried_spend:
        return f"{facts.carried_spend} CNY spend carried in by import"
    return None


def _activity(facts: MemberFacts, rules: Rules, today: date) -> tuple[str, str]:
    seg = rules.segments
    visits = facts.visits_last_year
    if visits >= seg.active_min_visits:
        return "active", f"{visits} visits in the last year"
    if visits >= seg.swinging_visits:
        return "swinging", f"{visits} visits in the last year"
    age = None if facts.last_purchase_on is None else (today - facts.last_purchase_on).days
    if age is None or age >= seg.churned_after_days:
        return "churned", f"no visit in the last {seg.churned_after_days} days"
    if age >= seg.trending_from_days:
        return "trending", f"one visit, {age} days ago"
    # One visit within the last few months: engaged but not yet regular (the seeds do not say).
    return "swinging", f"one recent visit, {age} days ago"


# --------------------------------------------------------------------------- SQL versions


def _purchase_facts(rules: Rules, today: date):
    """Per member: spend and purchases over the window, visits in the last year, last purchase."""
    window_start = rules.last_days_start(today, rules.segments.window_days)
    year_start = rules.last_days_start(today, YEAR_DAYS)
    return (
        select(
            Purchase.member_id.label("member_id"),
            func.sum(case((Purchase.purchased_at >= window_start, Purchase.amount - Purchase.refunded_amount),
                          else_=0)).label("spend"),
            func.sum(case((Purchase.purchased_at >= window_start, 1), else_=0)).label("purchases"),
            func.sum(case((Purchase.purchased_at >= year_start, 1), else_=0)).label("visits"),
            func.max(Purchase.purchased_at).label("last_at"),
        )
        .where(Purchase.refunded_at.is_(None))
        .group_by(Purchase.member_id)
        .subquery("p")
    )


def points_cutoff(session: Session, rules: Rules) -> int | None:
    """The least cumulative points still in the top share of all members (None: nobody is)."""
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    rank = int(members * rules.segments.top_points_share)
    if rank < 1:
        return None
    ranked = select(Member.points_balance).where(Member.points_balance > 0).order_by(Member.points_balance.desc())
    cutoff = session.scalar(ranked.offset(rank - 1).limit(1))
    if cutoff is None:  # fewer members with points than the top share: all of them are in it
        cutoff = session.scalar(select(func.min(Member.points_balance)).where(Member.points_balance > 0))
    return int(cutoff) if cutoff is not None else None


def member_facts(session: Session, member: Member, rules: Rules, today: date, cutoff: int | None) -> MemberFacts:
    """The facts of one member, from the same queries the set-based pass uses."""
    p = _purchase_facts(rules, today)
    row = session.execute(select(p.c.spend, p.c.purchases, p.c.visits, p.c.last_at).where(p.c.member_id == member.id)).first()
    points = member.points_balance
    spend, purchases, visits, last_at = row if row else (Decimal(0), 0, 0, None)
    carried = carried_spend(member, rules, today)
    if last_at is not None and last_at.tzinfo is None:  # raw aggregate: stored as naive UTC
        last_at = last_at.replace(tzinfo=timezone.utc)
    return MemberFacts(
        tier=member.tier,
        spend=Decimal(spend or 0).quantize(Decimal("0.01")),
        purchases=int(purchases or 0),
        visits_last_year=int(visits or 0),
        last_purchase_on=rules.today(last_at) if last_at else None,
        points=points,
        top_points=cutoff is not None and points > 0 and points >= cutoff,
        carried_spend=Decimal(carried or 0).quantize(Decimal("0.01")),
        held_until=hold_end(member.tier_source, member.tier_since, rules),
        grace_until=member.retention_grace_until,
    )


def _earned_tier_sql(spend, rules: Rules):
    whens = [(spend >= tier.min_spend, tier.id) for tier in reversed(rules.tiers[1:])]
    return case(*whens, else_=rules.tiers[0].id)


def _segment_sql(p, points, rules: Rules, day: date, cutoff: int | None):
    """The SQL CASE mirroring ``_segment`` on ``day`` (``p``: the purchase facts for that day)."""
    seg = rules.segments
    purchases = func.coalesce(p.c.purchases, 0)
    top = and_(points > 0, points >= cutoff) if cutoff is not None else literal(False)
    frequent = purchases * YEAR_DAYS >= seg.frequent_purchases_per_year * seg.window_days
    moved_in = or_(_held_sql(rules, day), carried_spend_sql(rules, day) > 0)
    in_grace = Member.retention_grace_until > day
    return case(
        (and_(purchases == 0, moved_in), "stable"),
        (and_(purchases == 0, in_grace | top), "retention"),
        (purchases == 0, "lapsed"),
        ((frequent | top) & Member.tier.not_in([rules.tiers[-1].id]), "upgrade"),
        (frequent | top, "stable"),
        (and_(purchases < seg.lapsed_below_purchases, ~moved_in), "lapsed"),
        else_="stable",
    )


def _classify_sql(p, points, rules: Rules, today: date, cutoff: int | None):
    """SQL CASE expressions mirroring evaluate_member (segment, activity)."""
    seg = rules.segments
    visits = func.coalesce(p.c.visits, 0)
    segment = _segment_sql(p, points, rules, today, cutoff)

    def aged(days: int):  # the last purchase is at least ``days`` days old
        return p.c.last_at < rules.last_days_start(today, days)

    activity = case(
        (visits >= seg.active_min_visits, "active"),
        (visits >= seg.swinging_visits, "swinging"),
        (p.c.last_at.is_(None) | aged(seg.churned_after_days), "churned"),
        (aged(seg.trending_from_days), "trending"),
        else_="swinging",
    )
    return segment, activity


@dataclass(frozen=True)
class EvaluationStats:
    members: int
    segments: dict[str, int]
    activities: dict[str, int]
    points_cutoff: int | None


def evaluate_all(session: Session, rules: Rules, today: date, *, now: datetime) -> EvaluationStats:
    """Write segment and activity of every member in one UPDATE (the tier is left to tier_changes)."""
    cutoff = points_cutoff(session, rules)
    p = _purchase_facts(rules, today)
    facts = (
        select(Member.id.label("id"), p.c.purchases, p.c.visits, p.c.last_at, Member.points_balance.label("points"))
        .outerjoin(p, p.c.member_id == Member.id)
        .subquery("f")
    )
    segment, activity = _classify_sql(facts, facts.c.points, rules, today, cutoff)
    session.execute(
        update(Member)
        .where(Member.id == facts.c.id)
        .values(segment=segment, activity=activity, evaluated_at=now)
        .execution_options(synchronize_session=False)
    )
    segments = dict(session.execute(select(Member.segment, func.count()).group_by(Member.segment)).all())
    activities = dict(session.execute(select(Member.activity, func.count()).group_by(Member.activity)).all())
    return EvaluationStats(sum(segments.values()), segments, activities, cutoff)


@dataclass(frozen=True)
class TierChange:
    member_id: int
    card_no: str
    old_tier: str
    new_tier: str


def _held_sql(rules: Rules, day: date):
    """A tier set by import or an operator still holding on ``day`` (as ``hold_end`` says)."""
    return and_(Member.tier_source.in_(HOLDING_SOURCES), Member.tier_since.is_not(None),
                Member.tier_since > day - timedelta(days=rules.segments.window_days))


def _tier_rank_sql(tier, rules: Rules):
    return case(*[(tier == t.id, n) for n, t in enumerate(rules.tiers)], else_=-1)


def _tier_on_sql(rules: Rules, day: date, cutoff: int | None):
    """(SQL expression of the tier the rules give each member on ``day``, the facts subquery to join).

    The earned tier counts carried spend while its start is inside the window; the member keeps a
    higher tier (``_tier_kept``) while it holds after an import or an operator set it, while in
    retention, or while lapsed in one of ``lapsed.keep_tier``. Top points are today's balances.
    """
    p = _purchase_facts(rules, day)
    earned = _earned_tier_sql(func.coalesce(p.c.spend, 0) + carried_spend_sql(rules, day), rules)
    segment = _segment_sql(p, Member.points_balance, rules, day, cutoff)
    kept = or_(_held_sql(rules, day), Member.retention_grace_until > day, segment == "retention",
               and_(segment == "lapsed", Member.tier.in_(rules.lapsed.keep_tier)))
    keeps = and_(kept, _tier_rank_sql(earned, rules) <= _tier_rank_sql(Member.tier, rules))
    return case((keeps, Member.tier), else_=earned), p


def tier_changes_query(rules: Rules, today: date, cutoff: int | None) -> Select:
    """Members whose tier the rules change today (earned tier over the window, holds respected).
    ``cutoff``: ``points_cutoff`` (who is in the top points share)."""
    new_tier, p = _tier_on_sql(rules, today, cutoff)
    return (
        select(Member.id, Member.card_no, Member.tier, new_tier.label("new_tier"))
        .outerjoin(p, p.c.member_id == Member.id)
        .where(new_tier != Member.tier)
        .order_by(Member.id)
    )


def downgrade_warnings_query(rules: Rules, today: date, cutoff: int | None) -> Select:
    """Members whose tier the rules would lower ``segments.downgrade_warning_days`` from now, not yet told.

    Each row has the day of the coming downgrade and the spend that would keep the tier. A member
    whose tier retention keeps then is not warned: the retention notices say how long it is kept.
    """
    on = today + timedelta(days=rules.segments.downgrade_warning_days)
    new_tier, p = _tier_on_sql(rules, on, cutoff)
    keep_min = case(*[(Member.tier == t.id, t.min_spend) for t in rules.tiers], else_=0)
    needed = keep_min - func.coalesce(p.c.spend, 0) - carried_spend_sql(rules, on)
    return (
        select(Member.id, Member.tier, keep_min.label("keep_min_spend"), needed.label("keep_needed"),
               literal(on).label("downgrade_on"))
        .outerjoin(p, p.c.member_id == Member.id)
        .where(_tier_rank_sql(new_tier, rules) < _tier_rank_sql(Member.tier, rules),
               Member.downgrade_warned_on.is_(None))
    )


def tier_changes(session: Session, rules: Rules, today: date) -> Iterator[TierChange]:
    """Stream the tier changes the rules call for; the caller applies them."""
    query = tier_changes_query(rules, today, points_cutoff(session, rules))
    rows = session.execute(query.execution_options(yield_per=1000))
    for member_id, card_no, old, new in rows:
        yield TierChange(member_id, card_no, old, new)


# --------------------------------------------------------------------------- changing tiers


def change_tier(session: Session, member_id: int, new_tier: str, actor: str, today: date,
                reason: str | None = None, source: str = "earned", *, now: datetime) -> str | None:
    """Move one member to ``new_tier`` and record it in the audit trail; returns the old tier (None: unchanged).

    ``source``: "earned" (purchases), or "import"/"operator", whose tier holds for the window.
    """
    old = session.scalar(select(Member.tier).where(Member.id == member_id))
    if old is None or old == new_tier:
        return None
    session.execute(update(Member).where(Member.id == member_id)
                    .values(tier=new_tier, tier_source=source, tier_since=today, downgrade_warned_on=None)
                    .execution_options(synchronize_session=False))
    detail = f"{old} → {new_tier}" + (f" ({reason})" if reason else "")
    session.add(MemberChange(member_id=member_id, action="tier", actor=actor, detail=detail, at=now))
    return old


def change_tiers(session: Session, member_ids: Select, new_tier: str, actor: str, reason: str, today: date, *,
                 now: datetime) -> int:
    """Move every member in ``member_ids`` (a SELECT of ids) to ``new_tier``, set-based, each change audited."""
    moving = and_(Member.id.in_(member_ids), Member.tier != new_tier)
    record_changes(session, moving, "tier", actor, Member.tier + literal(f" → {new_tier} ({reason})"), now=now)
    return session.execute(update(Member).where(moving)
                           .values(tier=new_tier, tier_source="earned", tier_since=today, downgrade_warned_on=None)
                           .execution_options(synchronize_session=False)).rowcount or 0


# --------------------------------------------------------------------------- explaining one member


@dataclass(frozen=True)
class MemberReport:
    """One member as the rules see them today, each verdict with its reason (`members show`)."""

    member: Member
    today: date
    evaluation: Evaluation
    ledger_total: int  # the sum of the ledger (the cached balance must equal it)
    next_expiry: tuple[int, date] | None


def explain_member(session: Session, card_no: str, rules: Rules, today: date) -> MemberReport | None:
    """Tier, segment, activity and balance of the member with ``card_no``, with reasons; None if unknown."""
    member = find_by_card(session, card_no)
    if member is None:
        return None
    facts = member_facts(session, member, rules, today, points_cutoff(session, rules))
    return MemberReport(
        member=member,
        today=today,
        evaluation=evaluate_member(facts, rules, today),
        ledger_total=ledger.ledger_sum(session, member.id),
        next_expiry=points_overview(session, member.id, rules, today).next_expiry,
    )
