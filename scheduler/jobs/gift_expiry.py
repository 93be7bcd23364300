"""Daily: redemption codes not collected in time expire (points, stock and entitlements come back, each
member told once per code: the outbox key is the code), and members who earned this year's annual gift
are told, with their account manager, once a year."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import gifts
from storage.outbox import member_audience, staff_alert_audience


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    """The annual-gift notices; the expiry notices are planned per code as the codes expire (``expire``)."""
    today = rules.today(now)
    occasion = gifts.annual_source(today.year)
    entitled = gifts.annual_entitled(today.year)
    audiences = [
        member_audience("gift_expiry", occasion, entitled, rules.gifts.entitlement_message, marketing=False),
        staff_alert_audience("gift_expiry", occasion, entitled, rules.gifts.entitlement_alert_message),
    ]
    return JobPlan(today.isoformat(), audiences, changes={"codes expired": gifts.due_codes(session, today)})


def expire(session: Session, rules: Rules, now: datetime, _plan: JobPlan) -> int:
    gifts.expire_due(session, rules, now, rules.jobs.gift_expiry.expired_message)
    return 0  # the expiry notices are planned per code by expire_due and counted as they go


JOB = Job("gift_expiry", plan, apply_after=expire)
