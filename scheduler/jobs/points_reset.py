"""Points policy: due lots expire, expiry reminders, and the retention segment's grace, reminders and reset.

DOMAIN.md, Tiers (挽留群体): points and privileges are kept ``retention.grace_months``; if the
member still does not buy, points are reset and the tier drops to what the rules give.
"""
from __future__ import annotations

from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import String, and_, cast, exists, func, literal, select, update
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import ledger, outbox, tiers
from storage.ledger import open_lots
from storage.models import LedgerEntry, Member
from storage.outbox import member_audience

ACTOR = "job:points_reset"


def plan(session: Session, rules: Rules, today: date) -> JobPlan:
    tiers.evaluate_all(session, rules, today)  # "bought in the meantime" is read from the segment
    job = rules.jobs.points_reset
    retention = Member.segment == "retention"
    until = today + relativedelta(months=rules.retention.grace_months)
    audiences = [
        member_audience("points_reset", f"grace:{until}", and_(retention, Member.retention_grace_until.is_(None)),
                        job.grace_message, extra=outbox.extra_json(grace_until=until)),
        member_audience("points_reset", f"reset:{today}",
                        and_(retention, Member.retention_grace_until <= today), job.reset_message,
                        extra=outbox.extra_json(grace_until=today)),
    ]
    for days in rules.retention.reminder_days_before:
        reset_day = today + timedelta(days=days)
        audiences.append(member_audience(
            "points_reset", f"remind{days}:{reset_day}", and_(retention, Member.retention_grace_until == reset_day),
            job.reminder_message, extra=outbox.extra_json(grace_until=reset_day, days_left=days)))
    expiring_on = today + timedelta(days=rules.points.expiry_reminder_days)
    lots = open_lots(LedgerEntry.member_id == Member.id, LedgerEntry.expires_on == expiring_on)
    points = select(func.sum(LedgerEntry.remaining)).where(lots).scalar_subquery()
    extra = literal('{"points": "') + cast(points, String) + literal(f'", "expires_on": "{expiring_on}"}}')
    audiences.append(member_audience("points_reset", f"lots:{expiring_on}", exists().where(lots),
                                     job.expiry_reminder_message, extra_sql=extra))
    due = session.scalar(select(func.coalesce(func.sum(LedgerEntry.remaining), 0))
                         .where(open_lots(LedgerEntry.expires_on < today)))
    resets = session.scalar(select(func.count()).where(retention, Member.retention_grace_until <= today))
    return JobPlan(today.isoformat(), audiences, changes={"points expiring today": int(due or 0),
                                                          "members whose points reset": int(resets or 0)})


def apply(session: Session, rules: Rules, today: date, plan: JobPlan) -> None:
    """Expire due lots, start grace periods, and reset those whose grace ended without a purchase."""
    plan.changes["points expired"] = ledger.expire_due_lots(session, today)
    until = today + relativedelta(months=rules.retention.grace_months)
    session.execute(update(Member).where(Member.segment == "retention", Member.retention_grace_until.is_(None))
                    .values(retention_grace_until=until).execution_options(synchronize_session=False))
    ended = Member.retention_grace_until <= today
    # Bought in the meantime: the nightly evaluation no longer puts them in retention.
    session.execute(update(Member).where(ended, Member.segment != "retention")
                    .values(retention_grace_until=None).execution_options(synchronize_session=False))
    to_reset = select(Member.id).where(ended, Member.segment == "retention")
    plan.changes["members reset"] = ledger.reset_points_bulk(
        session, to_reset, reason="retention grace ended", key_prefix=f"retention:{today}:")
    # No purchase in the window: the rules' earned tier is the base tier.
    tiers.change_tiers(session, to_reset, rules.tiers[0].id, ACTOR, "retention grace ended", today)
    session.execute(update(Member).where(Member.id.in_(to_reset))
                    .values(retention_grace_until=None, segment="lapsed")
                    .execution_options(synchronize_session=False))


JOB = Job("points_reset", plan, apply_after=apply)
