"""Points policy: due lots expire, expiry reminders, the retention segment's grace, reminders and reset,
and the lapsed segment's reset.

DOMAIN.md, Tiers: 挽留群体 — points and privileges are kept ``retention.grace_months``: when the
grace starts the member's open lots are kept until its end (they do not expire meanwhile, and the
tier holds: storage/tiers.py); a member who buys meanwhile keeps both (the lots are renewed, the
tier holds for a window); one who still has not bought when it ends has the points reset and the
tier drops to what the rules give. 抛弃客户 — a member the programme has known for
the whole window who lapses has their points reset once (``lapsed.reset_points``); members of
``lapsed.keep_tier`` keep their card.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import String, and_, cast, exists, func, literal, select, update
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import ledger, outbox, tiers
from storage.ledger import open_lots
from storage.members import record_changes
from storage.models import LedgerEntry, Member, Purchase
from storage.outbox import member_audience

ACTOR = "job:points_reset"


def _bought(rules: Rules, today: date):
    """The member has a purchase (not refunded) inside the window: no longer without purchase."""
    return exists().where(Purchase.member_id == Member.id, Purchase.refunded_at.is_(None),
                          Purchase.purchased_at >= rules.last_days_start(today, rules.segments.window_days))


def _grace_ends(rules: Rules, today: date):
    """Members whose grace ends today (or ended on a day the job did not run) without a purchase."""
    return and_(Member.retention_grace_until <= today, ~_bought(rules, today))


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    tiers.evaluate_all(session, rules, today, now=now)  # who is in retention is read from the segment
    job = rules.jobs.points_reset
    until = today + relativedelta(months=rules.retention.grace_months)
    in_grace = Member.retention_grace_until > today
    audiences = [
        member_audience("points_reset", f"grace:{until}",
                        and_(Member.segment == "retention", Member.retention_grace_until.is_(None)),
                        job.grace_message, extra=outbox.extra_json(grace_until=until)),
        member_audience("points_reset", f"reset:{today}", _grace_ends(rules, today), job.reset_message,
                        extra=outbox.extra_json(grace_until=today)),
    ]
    for days in rules.retention.reminder_days_before:
        reset_day = today + timedelta(days=days)
        audiences.append(member_audience(
            "points_reset", f"remind{days}:{reset_day}",
            and_(Member.retention_grace_until == reset_day, ~_bought(rules, today)),
            job.reminder_message, extra=outbox.extra_json(grace_until=reset_day, days_left=days)))
    expiring_on = today + timedelta(days=rules.points.expiry_reminder_days)
    lots = open_lots(LedgerEntry.member_id == Member.id, LedgerEntry.expires_on == expiring_on)
    points = select(func.sum(LedgerEntry.remaining)).where(lots).scalar_subquery()
    extra = literal('{"points": "') + cast(points, String) + literal(f'", "expires_on": "{expiring_on}"}}')
    # A member in the grace hears of its end from the retention reminders instead.
    audiences.append(member_audience("points_reset", f"lots:{expiring_on}",
                                     and_(exists().where(lots), ~func.coalesce(in_grace, False)),
                                     job.expiry_reminder_message, extra_sql=extra))
    due = session.scalar(select(func.coalesce(func.sum(LedgerEntry.remaining), 0))
                         .where(open_lots(LedgerEntry.expires_on < today)))
    resets = session.scalar(select(func.count()).where(_grace_ends(rules, today)))
    return JobPlan(today.isoformat(), audiences, changes={"points expiring today": int(due or 0),
                                                          "members whose points reset": int(resets or 0)})


def apply(session: Session, rules: Rules, now: datetime, plan: JobPlan) -> int:
    """Start grace periods (their points kept to its end), expire due lots, reset those whose grace ended
    without a purchase, and reset the points of members who lapsed."""
    today = rules.today(now)
    plan.changes["graces started"] = _start_graces(session, rules, now, today)
    plan.changes["members back during their grace"] = _keep_returning(session, rules, now, today)
    plan.changes["points expired"] = ledger.expire_due_lots(session, now, today)
    to_reset = select(Member.id).where(_grace_ends(rules, today))
    plan.changes["members reset"] = ledger.reset_points_bulk(
        session, to_reset, reason="retention grace ended", key_prefix=f"retention:{today}:", now=now)
    # No purchase in the window: the rules' earned tier is the base tier, unless lapsed members keep theirs.
    dropping = select(Member.id).where(_grace_ends(rules, today), Member.tier.not_in(rules.lapsed.keep_tier))
    tiers.change_tiers(session, dropping, rules.tiers[0].id, ACTOR, "retention grace ended", today, now=now)
    session.execute(update(Member).where(Member.id.in_(to_reset))
                    .values(retention_grace_until=None, segment="lapsed")
                    .execution_options(synchronize_session=False))
    plan.changes["lapsed members reset"] = _reset_lapsed(session, rules, now, today)
    return 0


def _start_graces(session: Session, rules: Rules, now: datetime, today: date) -> int:
    """Members who entered retention: their grace starts, and their open lots are kept until it ends."""
    until = today + relativedelta(months=rules.retention.grace_months)
    starting = select(Member.id).where(Member.segment == "retention", Member.retention_grace_until.is_(None))
    session.execute(update(LedgerEntry).where(open_lots(LedgerEntry.member_id.in_(starting),
                                                        LedgerEntry.expires_on < until))
                    .values(expires_on=until).execution_options(synchronize_session=False))
    record_changes(session, Member.id.in_(starting), "retention", ACTOR,
                   literal(f"grace until {until}: ") + cast(Member.points_balance, String) + literal(" points kept"),
                   now=now)
    return session.execute(update(Member).where(Member.id.in_(starting)).values(retention_grace_until=until)
                           .execution_options(synchronize_session=False)).rowcount or 0


def _keep_returning(session: Session, rules: Rules, now: datetime, today: date) -> int:
    """Members who bought during their grace keep what they were promised ("期间任意消费即可继续享有"): the
    kept lots take the validity of points earned today, and the tier holds for the window from today
    (``tiers.HOLDING_SOURCES``: "retained") unless purchases earn a higher one. The grace ends."""
    back = and_(Member.retention_grace_until.is_not(None), _bought(rules, today))
    grace_of_owner = select(Member.retention_grace_until).where(Member.id == LedgerEntry.member_id).scalar_subquery()
    for tier in rules.tiers:
        owners = select(Member.id).where(back, Member.tier == tier.id)
        session.execute(update(LedgerEntry)
                        .where(open_lots(LedgerEntry.member_id.in_(owners), LedgerEntry.expires_on <= grace_of_owner))
                        .values(expires_on=tier.lot_expiry(today)).execution_options(synchronize_session=False))
    record_changes(session, back, "retention", ACTOR,
                   literal("bought during the grace: points and tier ") + Member.tier + literal(" kept"), now=now)
    return session.execute(update(Member).where(back)
                           .values(retention_grace_until=None, tier_source="retained", tier_since=today,
                                   downgrade_warned_on=None)
                           .execution_options(synchronize_session=False)).rowcount or 0


def _reset_lapsed(session: Session, rules: Rules, now: datetime, today: date) -> int:
    """Points of members who lapsed are reset once per lapse (``lapsed.reset_points``), if the programme has
    known them for the whole window (a new member who bought once has not had the window to buy again)."""
    session.execute(update(Member).where(Member.segment != "lapsed", Member.lapsed_reset_on.is_not(None))
                    .values(lapsed_reset_on=None).execution_options(synchronize_session=False))
    if not rules.lapsed.reset_points:
        return 0
    lapsing = and_(Member.segment == "lapsed", Member.lapsed_reset_on.is_(None),
                   Member.created_at < rules.last_days_start(today, rules.segments.window_days))
    reset = ledger.reset_points_bulk(session, select(Member.id).where(lapsing), reason="lapsed",
                                     key_prefix=f"lapsed:{today}:", now=now)
    session.execute(update(Member).where(lapsing).values(lapsed_reset_on=today)
                    .execution_options(synchronize_session=False))
    return reset


JOB = Job("points_reset", plan, apply_after=apply)
