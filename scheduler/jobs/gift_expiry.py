"""Daily: redemption codes not collected in time expire; points, stock and entitlements come back and
each member is told once per code (the outbox key is the code)."""
from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import gifts


def plan(session: Session, rules: Rules, today: date) -> JobPlan:
    """Only counts: the notices are planned per code as the codes expire (``expire``)."""
    return JobPlan(today.isoformat(), [], changes={"codes expired": gifts.due_codes(session, today)})


def expire(session: Session, rules: Rules, today: date, _plan: JobPlan) -> None:
    gifts.expire_due(session, rules, today, rules.jobs.gift_expiry.expired_message)


JOB = Job("gift_expiry", plan, apply_after=expire)
