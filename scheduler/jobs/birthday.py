"""Birthday greetings by tier, vouchers for the voucher tiers, alerts to account managers ahead."""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, select
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import outbox
from storage.models import Member
from storage.outbox import member_audience, staff_alert_audience
from storage.vouchers import issue_vouchers


def birthday_keys(day: date) -> list[int]:
    """The birthday_md values greeted on ``day``: 29 February is greeted on 28 February in other years."""
    keys = [day.month * 100 + day.day]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        keys.append(229)
    return keys


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    job = rules.jobs.birthday
    message = case(*[(Member.tier == tier, name) for tier, name in job.messages.items()])
    greet = member_audience(
        "birthday", today.isoformat(),
        and_(Member.birthday_md.in_(birthday_keys(today)), Member.tier.in_(job.messages)), message,
    )
    alert_day = today + timedelta(days=job.manager_alert_days_before)
    alert = staff_alert_audience(
        "birthday", f"alert:{alert_day.isoformat()}",
        and_(Member.birthday_md.in_(birthday_keys(alert_day)), Member.tier.in_(job.manager_alert_tiers)),
        job.manager_alert_message,
    )
    return JobPlan(today.isoformat(), [greet, alert])


def give_vouchers(session: Session, rules: Rules, now: datetime) -> int:
    """A gift voucher for each member of the voucher tiers greeted today (once per birthday)."""
    job, today = rules.jobs.birthday, rules.today(now)
    greeted = select(Member.id).where(
        Member.birthday_md.in_(birthday_keys(today)), Member.tier.in_(job.voucher_tiers),
        outbox.marketing_skip_reason().is_(None),
    )
    return issue_vouchers(session, greeted, today.isoformat(), today + timedelta(days=job.voucher_valid_days),
                          prefix=f"BD{today:%y%m%d}", now=now)


JOB = Job("birthday", plan, apply_before=give_vouchers,
          preview_values={"voucher_code": "BDxxxxxx", "voucher_valid_until": "YYYY-MM-DD"})
